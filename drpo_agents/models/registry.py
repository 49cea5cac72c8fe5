"""Turning ``"provider:model"`` strings into models, and naming models in artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.language_models import BaseLanguageModel

from drpo_agents.errors import ConfigError

Role = Literal["responder", "judge", "rewriter"]


def resolve_model(spec: str | BaseLanguageModel[Any], role: Role) -> BaseLanguageModel[Any]:
    """A model instance for ``role`` from an instance or a string.

    Strings:
        ``"sandbox"`` or ``"sandbox:SEED"``: the offline simulated model for ``role``;
        ``"local:smollm2-135m"`` or ``"local:PATH.gguf"``: a GGUF model run in-process by
        llama.cpp (the ``local`` extra; see :mod:`drpo_agents.models.local`);
        anything else goes to LangChain's ``init_chat_model`` (e.g. ``"openai:gpt-4o-mini"``,
        ``"anthropic:claude-sonnet-4-5"``), which needs the provider's package and API key.

    Raises:
        ConfigError: for an empty or unknown model string; for ``local:`` strings, a one-line
            fix when llama-cpp-python or the GGUF file is missing.
    """
    if isinstance(spec, BaseLanguageModel):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"the {role} model must be a LangChain model or a 'provider:model' string, got {spec!r}"
        )
    text = spec.strip()
    provider, _, name = text.partition(":")
    if provider == "sandbox":
        from drpo_agents.models.sandbox import sandbox_models

        try:
            seed = int(name) if name else 0
        except ValueError as exc:
            raise ConfigError(f"sandbox model strings are 'sandbox' or 'sandbox:SEED', got {text!r}") from exc
        return sandbox_models(seed)[role]
    if provider == "local":
        from drpo_agents.models.local import local_chat_model

        return local_chat_model(name)
    from langchain.chat_models import init_chat_model

    # OpenAI's client waits forever by default; a stalled provider must not hang a run.
    options: dict[str, Any] = (
        {"timeout": 120, "max_retries": 3} if provider in {"openai", "azure_openai"} else {}
    )
    try:
        model: BaseLanguageModel[Any] = init_chat_model(text, **options)
        return model
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"cannot create the {role} model from {text!r}: {exc}") from exc


def model_identity(model: BaseLanguageModel[Any]) -> str:
    """A short, stable description of a model for artifacts (provider, model name, endpoint)."""
    provider = getattr(model, "_llm_type", type(model).__name__)
    params = getattr(model, "_identifying_params", {}) or {}
    name = (
        getattr(model, "model_name", None)
        or getattr(model, "model", None)
        or params.get("model_name")
        or params.get("model")
        or params.get("role")
    )
    identity = f"{provider}:{name}" if name else str(provider)
    if "seed" in params and provider == "drpo-sandbox":
        identity += f"(seed={params['seed']})"
    base_url = getattr(model, "openai_api_base", None)
    return f"{identity}@{base_url}" if base_url else identity


def model_notes(models: Mapping[str, BaseLanguageModel[Any]]) -> list[str]:
    """Warnings to carry in the artifact, e.g. which roles were simulated."""
    from drpo_agents.models.sandbox import SANDBOX_NOTE

    simulated = [role for role, m in models.items() if getattr(m, "_llm_type", "") == "drpo-sandbox"]
    return [f"{SANDBOX_NOTE} Simulated roles: {', '.join(simulated)}."] if simulated else []


def default_rewriter(judge: str | BaseLanguageModel[Any]) -> str | BaseLanguageModel[Any]:
    """The rewriter to use when none is given: the judge's model, except that a simulated judge
    pairs with the simulated rewriter of the same seed (a sandbox judge cannot rewrite prompts)."""
    if isinstance(judge, BaseLanguageModel) and getattr(judge, "_llm_type", "") == "drpo-sandbox":
        return f"sandbox:{getattr(judge, 'seed', 0)}"
    return judge
