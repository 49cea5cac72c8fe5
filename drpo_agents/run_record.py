"""``config.json``: what a run records of itself (id, config, models, memory) so it can be resumed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from drpo_agents.config import DRPOConfig
from drpo_agents.errors import ConfigError
from drpo_agents.infra.run_files import CONFIG_FILE, private_folder


@dataclass(frozen=True)
class RunRecord:
    """What ``config.json`` keeps of a run.

    Attributes:
        run_id: the run's id (also its checkpoint thread id).
        config: the run's settings.
        models: per role, what a resume rebuilds the model from (:meth:`RunModels.specs`).
        memory: the critique-memory location, when it is a folder or a server URL. A folder inside
            the run folder is saved relative to it and any other as an absolute path, so a resume
            from another working directory opens the same memory.
        identities: per role, the model that ran (:meth:`RoleModels.identities`), which a resume
            must match; empty in records written before it was kept.
    """

    run_id: str
    config: DRPOConfig
    models: dict[str, str | list[str]]
    memory: str | None
    identities: dict[str, str] = field(default_factory=dict)

    def save(self, run_dir: Path) -> None:
        """Write ``run_dir/config.json`` (the folder is made if needed)."""
        private_folder(run_dir)
        record = {
            "run_id": self.run_id,
            "config": self.config.to_json_dict(),
            "models": self.models,
            "identities": self.identities,
            "memory": _portable(self.memory, run_dir),
        }
        (run_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        """The record of the run in ``run_dir``.

        Raises:
            ConfigError: no ``config.json``, or a damaged one.
        """
        try:
            record = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
            return cls(
                run_id=str(record["run_id"]),
                config=DRPOConfig.model_validate(record["config"]),
                models=dict(record.get("models", {})),
                memory=_located(record.get("memory"), run_dir),
                identities={str(k): str(v) for k, v in dict(record.get("identities") or {}).items()},
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG_FILE})") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{run_dir / CONFIG_FILE} is damaged: {exc}") from exc


def _portable(memory: str | None, run_dir: Path) -> str | None:
    """``memory`` as ``config.json`` keeps it: a server URL as is, a folder relative to the run
    folder when inside it, else absolute."""
    if memory is None or "://" in memory:
        return memory
    folder = Path(memory).resolve()
    try:
        return str(folder.relative_to(run_dir.resolve()))
    except ValueError:
        return str(folder)


def _located(memory: object, run_dir: Path) -> str | None:
    """The memory location a saved record names (relative folders are inside the run folder; a
    record written before that rule named them from the working directory, which still works)."""
    if not isinstance(memory, str):
        return None
    if "://" in memory or Path(memory).is_absolute():
        return memory
    inside = run_dir / memory
    return str(inside) if inside.exists() or not Path(memory).exists() else memory
