"""Model construction: provider strings, the offline sandbox world."""

from drpo_agents.models.registry import model_identity, resolve_model
from drpo_agents.models.sandbox import (
    SANDBOX_NOTE,
    SandboxJudge,
    SandboxResponder,
    SandboxRewriter,
    sandbox_models,
)

__all__ = [
    "SANDBOX_NOTE",
    "SandboxJudge",
    "SandboxResponder",
    "SandboxRewriter",
    "model_identity",
    "resolve_model",
    "sandbox_models",
]
