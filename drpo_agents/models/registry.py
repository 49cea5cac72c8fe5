"""Turning ``"provider:model"`` strings into models, and naming models in artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from langchain_core.language_models import BaseLanguageModel

from drpo_agents.config import Role
from drpo_agents.errors import ConfigError

ModelT = TypeVar("ModelT")

# Providers whose package and key can be checked before anything is built:
# provider -> (module, pip package, environment variable holding the key).
PROVIDER_REQUIREMENTS: dict[str, tuple[str, str, str]] = {
    "openai": ("langchain_openai", "langchain-openai", "OPENAI_API_KEY"),
    "anthropic": ("langchain_anthropic", "langchain-anthropic", "ANTHROPIC_API_KEY"),
    "google_genai": ("langchain_google_genai", "langchain-google-genai", "GOOGLE_API_KEY"),
    "mistralai": ("langchain_mistralai", "langchain-mistralai", "MISTRAL_API_KEY"),
    "groq": ("langchain_groq", "langchain-groq", "GROQ_API_KEY"),
    "deepseek": ("langchain_deepseek", "langchain-deepseek", "DEEPSEEK_API_KEY"),
    "xai": ("langchain_xai", "langchain-xai", "XAI_API_KEY"),
    "fireworks": ("langchain_fireworks", "langchain-fireworks", "FIREWORKS_API_KEY"),
    "together": ("langchain_together", "langchain-together", "TOGETHER_API_KEY"),
}


def resolve_model(spec: str | BaseLanguageModel[Any], role: Role) -> BaseLanguageModel[Any]:
    """A model instance for ``role`` from an instance or a string.

    Strings:
        ``"sandbox"`` or ``"sandbox:SEED"``: the offline simulated model for ``role``, optionally
        followed by knobs as a query string, e.g. ``"sandbox:3?noise=0.3&length_bias=1.0"`` (a
        noisy, length-biased judge). Each knob applies to the roles that have it (``noise``,
        ``length_bias``: judge; ``attention_span``, ``max_prompt_words``: responder;
        ``trap_rate``: rewriter) and is ignored by the others, so one string can serve every role;
        ``"local:smollm2-135m"`` or ``"local:PATH.gguf"``: a GGUF model run in-process by
        llama.cpp (the ``local`` extra; see :mod:`drpo_agents.models.local`);
        anything else goes to LangChain's ``init_chat_model`` (e.g. ``"openai:gpt-4o-mini"``,
        ``"anthropic:claude-sonnet-4-5"``), which needs the provider's package and API key.

    Raises:
        ConfigError: for an empty or unknown model string; for a known provider (see
            :data:`PROVIDER_REQUIREMENTS`) whose package is not installed or whose API key
            variable is not set; for ``sandbox`` strings, a bad seed, an
            unknown knob or a bad value; for ``local:`` strings, a one-line fix when
            llama-cpp-python or the GGUF file is missing.
    """
    if isinstance(spec, BaseLanguageModel):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"the {role} model must be a LangChain model or a 'provider:model' string, got {spec!r}"
        )
    text = spec.strip()
    provider, _, name = text.partition(":")
    if provider.partition("?")[0] == "sandbox":
        return _sandbox_model(text, role)
    if provider == "local":
        from drpo_agents.models.local import local_chat_model

        return local_chat_model(name)
    _check_provider(provider, role, text)
    from langchain.chat_models import init_chat_model

    # OpenAI's client waits forever by default; a stalled provider must not hang a run.
    options: dict[str, Any] = (
        {"timeout": 120, "max_retries": 3} if provider in {"openai", "azure_openai"} else {}
    )
    try:
        model: BaseLanguageModel[Any] = init_chat_model(text, **options)
        return model
    except Exception as exc:  # LangChain's ValueError/ImportError, or a client refusing its settings
        raise ConfigError(f"cannot create the {role} model from {text!r}: {exc}") from exc


def _check_provider(provider: str, role: Role, text: str) -> None:
    """Fail before anything is built when a known provider's package or API key is missing."""
    import importlib.util
    import os

    if provider not in PROVIDER_REQUIREMENTS:
        return
    module, package, key = PROVIDER_REQUIREMENTS[provider]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"the {role} model {text!r} needs the {package} package: pip install {package}")
    if not os.environ.get(key):
        raise ConfigError(f"the {role} model {text!r} needs an API key: set the {key} environment variable")


def _sandbox_model(text: str, role: Role) -> BaseLanguageModel[Any]:
    """The sandbox model for ``role`` from ``"sandbox[:SEED][?KNOB=VALUE&...]"``."""
    from pydantic import ValidationError

    from drpo_agents.models.sandbox import SANDBOX_CLASSES, sandbox_models, sandbox_option_names

    valid = ", ".join(sandbox_option_names())
    syntax = f"sandbox model strings are 'sandbox[:SEED][?OPTION=VALUE&...]' with options {valid}"
    base, _, query = text.partition("?")
    seed_text = base.partition(":")[2]
    try:
        seed = int(seed_text) if seed_text else 0
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError as exc:
        raise ConfigError(f"{syntax}; got {text!r}") from exc
    options: dict[str, dict[str, str]] = {r: {} for r in SANDBOX_CLASSES}
    seen: set[str] = set()
    for key, value in pairs:
        if key not in sandbox_option_names():
            hint = f" (the seed goes after a colon: 'sandbox:{value}')" if key == "seed" else ""
            raise ConfigError(f"unknown sandbox option {key!r} in {text!r}{hint}; valid options: {valid}")
        if key in seen:
            raise ConfigError(f"sandbox option {key!r} is given twice in {text!r}")
        seen.add(key)
        for r, cls in SANDBOX_CLASSES.items():
            if key in cls.knob_names():
                options[r][key] = value
    try:
        # Every role is built, so a bad value fails whichever role the string is resolved for.
        models = sandbox_models(
            seed,
            judge_options=options["judge"],
            rewriter_options=options["rewriter"],
            **options["responder"],
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigError(
            f"bad sandbox option {where}={error['input']!r} in {text!r}: {error['msg']}; valid options: {valid}"
        ) from None
    return models[role]


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
        # Knobs are in the params only when changed: "drpo-sandbox:judge(seed=1,noise=0.3)".
        knobs = "".join(f",{k}={v}" for k, v in params.items() if k not in {"role", "seed"})
        identity += f"(seed={params['seed']}{knobs})"
    base_url = getattr(model, "openai_api_base", None)
    return f"{identity}@{base_url}" if base_url else identity


def rebuild_spec(model: BaseLanguageModel[Any]) -> str | None:
    """The model string :func:`resolve_model` turns back into ``model``, where one exists.

    Sandbox models (``"sandbox:SEED?KNOB=VALUE"``) and in-process local models built with their
    default options (``"local:PATH.gguf"``) have one, so a run started with such instances (the
    CLI builds instances) resumes from Python without them; other instances return None.
    """
    from drpo_agents.models.local import LocalChatModel
    from drpo_agents.models.sandbox.chat import SandboxChatModel

    if isinstance(model, SandboxChatModel):
        knobs = model.knobs()
        return f"sandbox:{model.seed}" + (f"?{urlencode(knobs)}" if knobs else "")
    if isinstance(model, LocalChatModel) and not model.model_fields_set - {"model_name", "model_path"}:
        return f"local:{model.model_path}"
    return None


def is_openai_client(model: object) -> bool:
    """Whether ``model`` is langchain-openai's chat client (OpenAI or any compatible server)."""
    try:
        from langchain_openai.chat_models.base import BaseChatOpenAI
    except ImportError:  # pragma: no cover - langchain-openai is a dependency
        return False
    return isinstance(model, BaseChatOpenAI)


def custom_openai_endpoint(model: object) -> bool:
    """Whether ``model`` is an OpenAI client pointed at another server (vLLM, Ollama, llama.cpp)."""
    base_url = getattr(model, "openai_api_base", None)
    return is_openai_client(model) and bool(base_url) and "api.openai.com" not in str(base_url)


# Fields chat models use for their reply length: OpenAI/Anthropic/most, Google, Ollama.
_OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_output_tokens", "num_predict")


def with_output_limit(model: ModelT, max_tokens: int) -> ModelT:
    """``model`` with a reply cap of ``max_tokens`` when it has none of its own.

    A model whose own limit is set keeps it (e.g. the in-process llama.cpp model's 512); a
    model without such a field (the sandbox, test doubles) is returned as is. An OpenAI client
    pointed at another server also sends ``max_tokens`` in the body: langchain-openai renames it
    ``max_completion_tokens``, which llama.cpp's server ignores (measured: a reply ran on past
    the cap).
    """
    fields = getattr(type(model), "model_fields", {})
    name = next((f for f in _OUTPUT_LIMIT_FIELDS if f in fields), None)
    if name is None or getattr(model, name) is not None:
        return model
    update: dict[str, Any] = {name: max_tokens}
    if custom_openai_endpoint(model):
        update["extra_body"] = {"max_tokens": max_tokens, **(getattr(model, "extra_body", None) or {})}
    copied: ModelT = model.model_copy(update=update)  # type: ignore[attr-defined]
    return copied


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
