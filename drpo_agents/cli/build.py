"""What a command builds from its options: the ``DRPOConfig`` and the run's models."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from drpo_agents.cli.errors import fail
from drpo_agents.config import DRPOConfig, as_config
from drpo_agents.errors import ConfigError, DRPOError
from drpo_agents.infra.run_files import CLI_FILE, CONFIG_FILE, CURRENT_FILE
from drpo_agents.json_types import JsonObject
from drpo_agents.models.registry import resolve_model
from drpo_agents.run_spec import RunModels


class ModelSpecs(TypedDict):
    """The models as the user named them (``cli.json`` holds these, plus ``base_url``)."""

    responder: str | None
    judge: str | None
    rewriter: str | None
    jury: list[str]


class CLIRecord(ModelSpecs):
    """What ``cli.json`` holds: the models as named, and the ``--base-url`` they were reached by."""

    base_url: str | None


def load_config(path: Path | None, overrides: Mapping[str, object]) -> DRPOConfig:
    """The config file's fields (if any) with every flag that was given on top."""
    base: JsonObject = {}
    if path is not None:
        try:
            base = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise fail(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(base, dict):
            raise fail(f"config file {path} must hold a JSON object")
    try:
        return as_config({**base, **{k: v for k, v in overrides.items() if v is not None}})
    except ConfigError as exc:
        raise fail(str(exc)) from exc


def build_model(spec: str | None, role: str, base_url: str | None) -> Any:
    """One model from ``PROVIDER:MODEL`` (through ``base_url`` for an OpenAI-compatible server)."""
    if spec is None:
        raise fail(f"no {role} model: pass --{role} PROVIDER:MODEL (e.g. openai:gpt-4o-mini) or --sandbox")
    if base_url and not spec.startswith(("sandbox", "local:")):
        from langchain_openai import ChatOpenAI

        # OpenAI-compatible servers (vLLM, Ollama, llama.cpp): the key comes only from the environment.
        return ChatOpenAI(
            model=spec.removeprefix("openai:"),
            base_url=base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
            timeout=120,
            max_retries=3,
        )
    try:
        return resolve_model(spec, role)  # type: ignore[arg-type]
    except DRPOError as exc:
        raise fail(str(exc)) from exc


def model_specs(
    sandbox: bool,
    responder: str | None,
    judge: str | None,
    rewriter: str | None,
    jury: list[str] | None = None,
) -> ModelSpecs:
    """The roles' specs from the flags; ``--sandbox`` fills in every role not given."""
    fill = "sandbox" if sandbox else None
    return {
        "responder": responder or fill,
        "judge": judge or fill,
        "rewriter": rewriter or fill,
        "jury": list(jury or []),
    }


def build_models(specs: ModelSpecs, base_url: str | None) -> RunModels:
    """Every role's model (after checking that a ``base_url`` endpoint answers)."""
    remote = [s for s in (specs["responder"], specs["judge"], specs["rewriter"], *specs["jury"]) if s]
    if base_url and any(not s.startswith(("sandbox", "local:")) for s in remote):
        from drpo_agents.preflight import check_endpoint

        check_endpoint(base_url)
    return RunModels(
        responder=build_model(specs["responder"], "responder", base_url),
        judge=build_model(specs["judge"], "judge", base_url),
        rewriter=build_model(specs["rewriter"], "rewriter", base_url) if specs["rewriter"] else None,
        jury=[build_model(spec, "judge", base_url) for spec in specs["jury"]],
    )


def read_cli_record(run_dir: Path) -> CLIRecord:
    """How ``drpo optimize`` built the run's models, checked before anything is built from it."""
    try:
        built = json.loads((run_dir / CLI_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        if (run_dir / CURRENT_FILE).exists():
            raise fail(
                f"{run_dir} is a deployment folder, not a run: `drpo realign` resumes its rounds"
            ) from exc
        if not (run_dir / CONFIG_FILE).is_file():
            raise fail(f"{run_dir} is not a run directory (no {CONFIG_FILE})") from exc
        raise fail(
            f"{run_dir} was not started by `drpo optimize` (no {CLI_FILE}); resume it from Python with "
            "drpo_agents.resume(run_dir, responder=..., judge=...)"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"cannot read {run_dir / CLI_FILE}: {exc}") from exc
    roles_ok = isinstance(built, dict) and all(
        isinstance(built.get(role), str) and built[role] for role in ("responder", "judge")
    )
    if not roles_ok or not isinstance(built.get("jury", []), list):
        raise fail(f"{run_dir / CLI_FILE} was not written by `drpo optimize`: not a drpo run directory")
    return CLIRecord(
        responder=built["responder"],
        judge=built["judge"],
        rewriter=built.get("rewriter"),
        jury=[str(spec) for spec in built.get("jury") or []],
        base_url=built.get("base_url"),
    )
