"""Using a DRPO result in an app: an aligned chat model, and hooks for agents that keep their own.

Three ways in, one alignment (:class:`AlignmentApplier`, the request the search optimized):

- :func:`with_alignment` -> :class:`AlignedChatModel`, a chat model for LCEL, LangGraph nodes,
  ``create_agent`` / ``create_react_agent`` with tools, structured output;
- :func:`alignment_middleware` -> middleware for ``langchain.agents.create_agent``;
- :func:`alignment_prompt` -> a ``prompt=`` for ``langgraph.prebuilt.create_react_agent``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from drpo_agents.aligned.chat_model import AlignedChatModel
from drpo_agents.aligned.messages import AlignmentApplier
from drpo_agents.artifact import AlignmentArtifact, ArtifactSource, load_artifact
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.errors import ConfigError, DRPOWarning
from drpo_agents.models.registry import model_identity, resolve_model
from drpo_agents.retrieval import ICLRetriever

if TYPE_CHECKING:
    from drpo_agents.aligned.middleware import AlignmentMiddleware

__all__ = [
    "AlignedChatModel",
    "AlignmentApplier",
    "AlignmentMiddleware",
    "ModelMismatchError",
    "ModelMismatchWarning",
    "alignment_middleware",
    "alignment_prompt",
    "with_alignment",
]


class ModelMismatchWarning(DRPOWarning):
    """An artifact is used with a model other than the one it was optimized for."""


class ModelMismatchError(ConfigError):
    """``strict=True``: an artifact is used with a model other than the one it was optimized for."""


def with_alignment(
    model: BaseChatModel | str,
    artifact: ArtifactSource,
    *,
    k: int | None = None,
    embeddings: EmbeddingsLike | None = None,
    min_similarity: float | None = None,
    retriever: ICLRetriever | None = None,
    strict: bool = False,
) -> AlignedChatModel:
    """``model`` under the optimized prompt and ICL examples of ``artifact``, as a chat model.

    The result is a ``BaseChatModel``: ``invoke``/``ainvoke``/``stream``/``batch``, callbacks,
    ``bind_tools``, ``with_structured_output`` (every method ``model`` supports), and it works as
    the model of ``create_agent`` / ``create_react_agent``. Each request starts with the optimized
    system prompt (the app's own system message follows it), then the ICL examples relevant to
    the conversation (see :class:`AlignmentApplier`), then the conversation.

    Args:
        model: the chat model to align, or a model string (``"openai:gpt-4o-mini"``,
            ``"sandbox"``, ``"local:smollm2-135m"``), resolved like every other entry point.
        artifact: an :class:`AlignmentArtifact`, a path to ``artifact.json`` or a run folder,
            an artifact dict or the DRPO graph's output.
        k: ICL examples per request; defaults to the artifact's ``icl_k``.
        embeddings: embeddings for ICL retrieval; defaults to those the search used (recorded
            in the artifact), else the packaged MiniLM.
        min_similarity: the relevance floor; defaults to the search's, else the embeddings'.
        retriever: a ready ICL retriever; overrides ``embeddings`` and ``min_similarity``.
        strict: raise :class:`ModelMismatchError`, instead of warning once, when ``model`` is
            not the model the artifact was optimized for.

    Raises:
        ArtifactError: ``artifact`` is not an artifact in any supported form.
        ConfigError: ``model`` is not a chat model or a valid model string (or, with
            ``strict``, another model than the artifact's).
    """
    result = load_artifact(artifact)
    inner = resolve_model(model, "responder") if isinstance(model, str) else model
    if not isinstance(inner, BaseChatModel):
        hint = (
            "; call .bind_tools(), .bind() or .with_retry() on the aligned model instead"
            if isinstance(inner, Runnable)
            else ""
        )
        raise ConfigError(
            "with_alignment needs a chat model (a BaseChatModel) or a 'provider:model' string, got "
            f"{type(inner).__name__}{hint}"
        )
    check_model(result, inner, strict=strict)
    applier = AlignmentApplier.from_artifact(
        result, k=k, embeddings=embeddings, min_similarity=min_similarity, retriever=retriever
    )
    streams = (
        type(inner)._stream is not BaseChatModel._stream or type(inner)._astream is not BaseChatModel._astream
    )
    return AlignedChatModel(
        inner=inner,
        applier=applier,
        alignment_id=f"{result.run_id}/{result.best_candidate_id or ''}",
        name="drpo_aligned_model",
        # The inner model's own behaviour, which its calls through this model keep.
        cache=inner.cache,
        rate_limiter=inner.rate_limiter,
        disable_streaming=inner.disable_streaming if streams else True,
        callbacks=inner.callbacks,
        verbose=inner.verbose,
        output_version=inner.output_version,
        profile=inner.profile,
        tags=[*(inner.tags or []), "drpo:aligned"],
        metadata={
            **(inner.metadata or {}),
            "drpo_run_id": result.run_id,
            "drpo_candidate_id": result.best_candidate_id,
        },
    )


def alignment_middleware(
    artifact: ArtifactSource,
    *,
    model: BaseChatModel | str | None = None,
    k: int | None = None,
    embeddings: EmbeddingsLike | None = None,
    min_similarity: float | None = None,
    retriever: ICLRetriever | None = None,
) -> AlignmentMiddleware:
    """Middleware that aligns every model call of a ``langchain.agents.create_agent`` agent.

    ``create_agent(llm, tools, middleware=[alignment_middleware(artifact, model=llm)])`` is the
    same as ``create_agent(with_alignment(llm, artifact), tools)`` for an agent that keeps its
    own model object. Pass ``model`` to check it is the artifact's (a warning otherwise).
    """
    from drpo_agents.aligned.middleware import AlignmentMiddleware

    result = load_artifact(artifact)
    if model is not None:
        check_model(result, resolve_model(model, "responder") if isinstance(model, str) else model)
    return AlignmentMiddleware(
        AlignmentApplier.from_artifact(
            result, k=k, embeddings=embeddings, min_similarity=min_similarity, retriever=retriever
        )
    )


def alignment_prompt(
    artifact: ArtifactSource,
    *,
    system_prompt: str | None = None,
    k: int | None = None,
    embeddings: EmbeddingsLike | None = None,
    min_similarity: float | None = None,
    retriever: ICLRetriever | None = None,
) -> Runnable[Any, list[BaseMessage]]:
    """A ``prompt=`` for ``langgraph.prebuilt.create_react_agent``: the agent's messages under
    the optimized system prompt, followed by ``system_prompt`` (the app's own, which this
    replaces as the agent's ``prompt=``), with the relevant ICL examples before the conversation."""
    from drpo_agents.aligned.middleware import alignment_prompt_runnable

    applier = AlignmentApplier.from_artifact(
        load_artifact(artifact),
        k=k,
        embeddings=embeddings,
        min_similarity=min_similarity,
        retriever=retriever,
    )
    return alignment_prompt_runnable(applier, system_prompt)


def check_model(artifact: AlignmentArtifact, model: Any, *, strict: bool = False) -> None:
    """Warn (or with ``strict``, raise) when ``model`` is not the model ``artifact`` was optimized for.

    Models are compared by name (``gpt-4o-mini``, ``smollm2-135m``, the sandbox), not by endpoint,
    so the same model behind another URL is the same model. Artifacts that do not name their
    responder are not checked.
    """
    optimized_for = artifact.models.get("responder", "")
    if not optimized_for or optimized_for.startswith("<"):
        return
    used = model_identity(model)
    if _model_name(used) == _model_name(optimized_for):
        return
    message = (
        f"this artifact was optimized for {optimized_for}, not {used}: its prompt and examples may not "
        "help this model (re-align it: drpo optimize --responder ...)"
    )
    if strict:
        raise ModelMismatchError(message)
    if (optimized_for, used) not in _warned:  # once per process for each pair, however often it is wrapped
        _warned.add((optimized_for, used))
        warnings.warn(message, ModelMismatchWarning, stacklevel=3)


_warned: set[tuple[str, str]] = set()


def _model_name(identity: str) -> str:
    """``provider:name(knobs)@endpoint`` -> ``name``, lower case; the sandbox is one model."""
    head = identity.split("@", 1)[0]
    provider, _, name = head.partition(":")
    if provider.startswith("drpo-sandbox"):
        return "drpo-sandbox"
    return (name or provider).split("(", 1)[0].strip().casefold()


def __getattr__(name: str) -> Any:
    if name == "AlignmentMiddleware":  # loads langchain's agent middleware only when asked
        from drpo_agents.aligned.middleware import AlignmentMiddleware

        return AlignmentMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
