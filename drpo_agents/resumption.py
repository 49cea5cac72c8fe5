"""What a resume may change of a run, checked before anything is written: its budgets and
concurrency, its depth (levels added), and its models only when asked; and the models it resumes with.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from drpo_agents.config import DRPOConfig, as_config
from drpo_agents.errors import ConfigError, DRPOWarning, ResumeRefused
from drpo_agents.run_record import RunRecord
from drpo_agents.run_spec import RunModels

RESUMABLE_SETTINGS = ("max_tokens_budget", "max_cost", "max_concurrency", "prices")
"""The settings a resume may change: they bound what the rest of the run spends, not what it does."""


class ModelChangeWarning(DRPOWarning):
    """A run resumed with other models than it started with (``allow_model_change=True``)."""


def resumed_config(
    stored: DRPOConfig, overrides: Mapping[str, object] | None, extend_depth: int
) -> DRPOConfig:
    """The run's config with ``overrides`` applied and ``extend_depth`` levels added.

    Raises:
        ResumeRefused: a negative ``extend_depth``, an invalid override, or one of a setting outside
            :data:`RESUMABLE_SETTINGS` (the levels already run were made with the old value).
    """
    if not isinstance(extend_depth, int) or extend_depth < 0:
        raise ResumeRefused(
            f"extend_depth must be a whole number of levels (0 or more), got {extend_depth!r}"
        )
    changed = as_config({**stored.to_json_dict(), **(overrides or {})})
    refused = [
        name
        for name in (overrides or {})
        if name not in RESUMABLE_SETTINGS and getattr(changed, name) != getattr(stored, name)
    ]
    if "depth" in refused:
        raise ResumeRefused(
            "a resume cannot change depth; add levels to a finished run with extend_depth=N "
            "(drpo resume RUN_DIR --extend-depth N)"
        )
    if refused:
        raise ResumeRefused(
            f"a resume cannot change {', '.join(refused)}: the levels already run used the old "
            f"value; a resume may change {', '.join(RESUMABLE_SETTINGS)}. For other settings start "
            "a new run from this one: optimize(..., start_from=RUN_DIR) or drpo optimize --from RUN_DIR"
        )
    if extend_depth:
        changed = changed.model_copy(update={"depth": changed.depth + extend_depth})
    return changed


def checked_models(record: RunRecord, identities: Mapping[str, str], allow_change: bool) -> str | None:
    """The change of models against those the run used (None: none), refused unless ``allow_change``.

    Raises:
        ResumeRefused: a role's model differs from the run's and ``allow_change`` is false.
    """
    recorded = record.identities  # empty for runs recorded before identities were kept
    changes = [
        f"{role} {recorded.get(role, 'none')!r} -> {identities.get(role, 'none')!r}"
        for role in dict.fromkeys([*recorded, *identities])
        if recorded and recorded.get(role) != identities.get(role)
    ]
    if not changes:
        return None
    said = "; ".join(changes)
    if not allow_change:
        raise ResumeRefused(
            f"the run used other models than these ({said}); mixing them would compare answers and "
            "scores of different models in one search. Pass the run's models, or allow it with "
            "allow_model_change=True (drpo resume --allow-model-change)"
        )
    return said


def warn_model_change(run_id: str, change: str, *, finished: bool = False) -> None:
    """Say that other models than its earlier levels' now run, or, for a finished run, that
    nothing ran with them."""
    message = (
        f"run {run_id} has finished: nothing ran with the other models ({change}); add levels with "
        "extend_depth=N (drpo resume --extend-depth N)"
        if finished
        else f"run {run_id} resumes with other models ({change}); its earlier levels were made by the old ones"
    )
    warnings.warn(message, ModelChangeWarning, stacklevel=3)


def stored_models(
    specs: Mapping[str, str | list[str]],
    responder: Any,
    judge: Any,
    rewriter: Any,
    jury: Sequence[Any] | None,
) -> RunModels:
    """The models to resume with: those given, else those ``config.json`` names by spec string.

    Raises:
        ConfigError: a role not given whose model was an instance that no string rebuilds.
    """

    def pick(given: Any, role: str) -> Any:
        if given is not None:
            return given
        spec = specs.get(role, "")
        if not isinstance(spec, str) or not spec or spec.startswith("<"):
            raise ConfigError(
                f"the {role} was a model instance ({spec.strip('<>') if isinstance(spec, str) else spec}) "
                f"when the run started; pass {role}= to resume() again"
            )
        return spec

    stored = specs.get("jury")
    stored_jury = list(stored) if isinstance(stored, list) else []
    if jury is None and any(spec.startswith("<") for spec in stored_jury):
        raise ConfigError("the jury held model instances when the run started; pass jury= to resume() again")
    # A rewriter recorded as the judge's model was the judge's default: it follows the judge given.
    judge_rewrote = rewriter is None and specs.get("rewriter") in (None, "", specs.get("judge"))
    return RunModels(
        responder=pick(responder, "responder"),
        judge=pick(judge, "judge"),
        rewriter=None if judge_rewrote else pick(rewriter, "rewriter"),
        jury=jury if jury is not None else stored_jury,
    )
