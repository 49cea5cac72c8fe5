"""The sandbox roles by name, their knobs, and :func:`sandbox_models` building all three."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from drpo_agents.models.sandbox.chat import SandboxChatModel
from drpo_agents.models.sandbox.judge import SandboxJudge
from drpo_agents.models.sandbox.responder import SandboxResponder
from drpo_agents.models.sandbox.rewriter import SandboxRewriter

SANDBOX_NOTE = (
    "SIMULATION: the sandbox responder/judge/rewriter are deterministic heuristics for trying "
    "DRPO's mechanics offline, not language models."
)

SANDBOX_CLASSES: dict[str, type[SandboxChatModel]] = {
    "responder": SandboxResponder,
    "judge": SandboxJudge,
    "rewriter": SandboxRewriter,
}


def sandbox_option_names() -> tuple[str, ...]:
    """Every knob of any sandbox role (what ``"sandbox?NAME=VALUE"`` model strings accept), sorted."""
    return tuple(sorted({name for cls in SANDBOX_CLASSES.values() for name in cls.knob_names()}))


def sandbox_models(
    seed: int = 0,
    *,
    judge_options: dict[str, Any] | None = None,
    rewriter_options: dict[str, Any] | None = None,
    **responder_options: Any,
) -> dict[str, BaseChatModel]:
    """The three sandbox roles, keyed ``responder``, ``judge``, ``rewriter``.

    Keyword arguments set the responder's knobs (``attention_span``, ``max_prompt_words``);
    ``judge_options`` the judge's (``noise``, ``length_bias``) and ``rewriter_options`` the
    rewriter's (``trap_rate``). Values are validated (pydantic ``ValidationError`` if bad).
    """
    return {
        "responder": SandboxResponder(seed=seed, **responder_options),
        "judge": SandboxJudge(seed=seed, **(judge_options or {})),
        "rewriter": SandboxRewriter(seed=seed, **(rewriter_options or {})),
    }
