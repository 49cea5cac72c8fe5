"""JSON files: atomic writes, and reads whose every failure is one clear error naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from drpo_agents.errors import DRPOError


def save_json_atomically(model: BaseModel, path: str | Path) -> Path:
    """Write ``model`` as indented UTF-8 JSON via a temporary file, so a crash never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    try:
        tmp.write_text(model.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(target)
    except OSError:
        tmp.unlink(missing_ok=True)  # e.g. a disk that filled up: leave no half-written file behind
        raise
    return target


def read_json(path: str | Path, what: str, error: type[DRPOError]) -> Any:
    """The JSON value in ``path``; a missing, unreadable or non-JSON file raises ``error`` with one
    line naming ``what`` (e.g. ``"artifact file"``) and the path."""
    source = Path(path)
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{what} not found: {source}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not UTF-8 JSON: {source}: {exc}") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {source}: {exc.strerror or exc}") from exc
