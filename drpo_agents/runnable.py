"""Applying an alignment artifact to any chat model, as a LangChain Runnable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableLambda

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.retrieval import EmbeddingsLike, ICLRetriever, InMemoryICLRetriever, fit_icl_budget


def _as_messages(value: Any) -> list[BaseMessage]:
    if isinstance(value, str):
        return [HumanMessage(value)]
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(m, BaseMessage) for m in value):
        return list(value)
    if isinstance(value, dict) and isinstance(value.get("messages"), Sequence):
        return _as_messages(value["messages"])
    raise TypeError(
        "aligned model input must be a string, a list of messages, a PromptValue or {'messages': [...]}, "
        f"got {type(value).__name__}"
    )


class AlignmentApplier:
    """Builds the aligned conversation: optimized system prompt, retrieved ICL turns, then the input.

    A system message already in the input is kept, after the aligned prompt, so app-specific
    instructions still apply.
    """

    def __init__(self, artifact: AlignmentArtifact, retriever: ICLRetriever, k: int) -> None:
        self.artifact = artifact
        self.retriever = retriever
        self.k = k

    def __call__(self, value: Any) -> list[BaseMessage]:
        messages = _as_messages(value)
        own_system = [m for m in messages if isinstance(m, SystemMessage)]
        conversation = [m for m in messages if not isinstance(m, SystemMessage)]
        system_text = "\n\n".join([self.artifact.system_prompt, *(m.text for m in own_system)])
        last_user = next((m.text for m in reversed(conversation) if isinstance(m, HumanMessage)), "")
        shots: list[BaseMessage] = []
        # The run's ICL budget, if it had one, applies wherever its result is used.
        budget = self.artifact.config.get("max_icl_tokens")
        retrieved = self.retriever.retrieve(last_user, self.k) if last_user else []
        for example in fit_icl_budget(retrieved, budget if isinstance(budget, int) else None):
            shots += [HumanMessage(example.query), AIMessage(example.answer)]
        return [SystemMessage(system_text), *shots, *conversation]


def with_alignment(
    model: BaseChatModel,
    artifact: AlignmentArtifact,
    *,
    k: int | None = None,
    embeddings: EmbeddingsLike | None = None,
    retriever: ICLRetriever | None = None,
) -> Runnable[Any, BaseMessage]:
    """Wrap ``model`` so every call runs under the optimized prompt and retrieved ICL examples.

    The result is an ordinary Runnable (``invoke``/``ainvoke``/``stream``/``batch``, callbacks,
    ``with_config``) that accepts a string, a list of messages, a ``PromptValue`` or
    ``{"messages": [...]}`` and returns the model's message, so it drops into LCEL chains:
    ``prompt | with_alignment(llm, artifact) | StrOutputParser()``.

    Args:
        model: the chat model to align (usually the one the artifact was optimized for).
        artifact: the result of :func:`drpo_agents.optimize` (or an imported official prompt).
        k: ICL examples per call; defaults to the artifact's ``icl_k``.
        embeddings: embeddings for ICL retrieval (default: offline hashing embeddings).
        retriever: a ready ICL retriever; overrides ``embeddings``.
    """
    chosen_k = artifact.icl_k if k is None else k
    source = retriever or InMemoryICLRetriever(artifact.icl_examples, embeddings)
    applier = AlignmentApplier(artifact, source, chosen_k)
    prepare: Runnable[Any, list[BaseMessage]] = RunnableLambda(applier, name="drpo_apply_alignment")
    return (prepare | model).with_config(
        run_name="drpo_aligned_model",
        tags=["drpo:aligned"],
        metadata={"drpo_run_id": artifact.run_id, "drpo_candidate_id": artifact.best_candidate_id},
    )
