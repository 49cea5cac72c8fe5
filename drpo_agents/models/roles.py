"""The models of a run's roles, prepared once: resolved, defaulted, capped and checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel

from drpo_agents.config import DEFAULT_ROLE_MAX_TOKENS, Role
from drpo_agents.errors import ConfigError
from drpo_agents.models.registry import (
    default_rewriter,
    model_identity,
    model_notes,
    resolve_model,
    with_output_limit,
)

ModelSpec = str | BaseLanguageModel[Any]
"""A model instance or a ``"provider:model"`` string."""


@dataclass(frozen=True)
class RoleModels:
    """The models the agents of a search, an ICL stage or an evaluation are built from.

    ``responder`` is None where nothing is answered (the ICL stage), ``rewriter`` None where
    nothing is rewritten (an evaluation).
    """

    judge: BaseChatModel
    responder: BaseLanguageModel[Any] | None = None
    rewriter: BaseChatModel | None = None
    jury: list[BaseChatModel] = field(default_factory=list)

    def identities(self) -> dict[str, str]:
        """Role -> model identity, as artifacts and reports name them (jurors joined, deduplicated)."""
        named: dict[str, str] = {}
        if self.responder is not None:
            named["responder"] = model_identity(self.responder)
        named["judge"] = model_identity(self.judge)
        if self.rewriter is not None:
            named["rewriter"] = model_identity(self.rewriter)
        if self.jury:
            named["jury"] = ", ".join(dict.fromkeys(model_identity(m) for m in self.jury))
        return named

    def notes(self) -> list[str]:
        """Warnings an artifact or report carries about these models (which roles are simulated)."""
        roles: dict[str, BaseLanguageModel[Any]] = {"judge": self.judge}
        if self.responder is not None:
            roles = {"responder": self.responder, **roles}
        if self.rewriter is not None:
            roles["rewriter"] = self.rewriter
        return model_notes(roles)


def prepare_role_models(
    *,
    judge: ModelSpec,
    responder: ModelSpec | None = None,
    rewriter: ModelSpec | None = None,
    rewrites: bool = True,
    jury: Sequence[ModelSpec] = (),
    max_tokens: Mapping[Role, int] = DEFAULT_ROLE_MAX_TOKENS,
) -> RoleModels:
    """The role models from instances or strings.

    Strings are resolved for their role (:func:`~drpo_agents.models.registry.resolve_model`); the
    rewriter defaults to the judge's model (when ``rewrites``); every role gets a reply cap from
    ``max_tokens`` unless the model has its own (no call runs to the end of a server's context).

    Raises:
        ConfigError: a bad model string, or a judge, rewriter or juror that is not a chat model.
    """
    limits = {**DEFAULT_ROLE_MAX_TOKENS, **max_tokens}

    def chat(spec: ModelSpec, role: Role, name: str) -> BaseChatModel:
        model = with_output_limit(resolve_model(spec, role), limits[role])
        if not isinstance(model, BaseChatModel):
            raise ConfigError(f"the {name} must be a chat model, got {type(model).__name__}")
        return model

    responder_model = (
        with_output_limit(resolve_model(responder, "responder"), limits["responder"])
        if responder is not None
        else None
    )
    return RoleModels(
        responder=responder_model,
        judge=chat(judge, "judge", "judge"),
        rewriter=(
            chat(rewriter if rewriter is not None else default_rewriter(judge), "rewriter", "rewriter")
            if rewrites
            else None
        ),
        jury=[chat(m, "judge", "juror") for m in jury],
    )
