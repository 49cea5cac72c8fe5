"""The aligned request: the optimized system prompt, the relevant ICL examples, then the conversation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.conversations import icl_layout_note, icl_messages
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.retrieval import ICLRetriever, fit_icl_budget, recorded_retriever, retrieval_text
from drpo_agents.schemas import ICLExample

ALIGNED_SYSTEM_ID = "drpo-aligned-system"
"""The id of the system message the alignment writes; a request that already starts with it is
aligned (an aligned model may see its own request again, e.g. from ``generate``)."""


class AlignmentApplier:
    """Builds the aligned request for a conversation, the way the search built the responder's.

    The optimized system prompt comes first; the app's own leading system message follows it in
    the same message (its text after ours, its other fields kept), so app instructions still
    apply. Then the ICL examples relevant to the conversation
    (:func:`drpo_agents.retrieval.retrieval_text`; none when nothing clears the relevance floor),
    as user/assistant turns, then the conversation unchanged (a system message later in the
    conversation stays where it is). The examples sit before the whole conversation, never between
    a tool call and its result, and are placed once per request (a tool loop's later calls get
    the same ones, not more).
    """

    def __init__(
        self,
        system_prompt: str,
        retriever: ICLRetriever | None,
        k: int,
        max_icl_tokens: int | None = None,
    ) -> None:
        self.system_prompt = system_prompt
        self.retriever = retriever
        self.k = k
        self.max_icl_tokens = max_icl_tokens

    @classmethod
    def from_artifact(
        cls,
        artifact: AlignmentArtifact,
        *,
        k: int | None = None,
        embeddings: EmbeddingsLike | None = None,
        min_similarity: float | None = None,
        retriever: ICLRetriever | None = None,
    ) -> AlignmentApplier:
        """The applier of ``artifact``: its prompt, and its examples retrieved as the search did
        (the recorded embeddings and relevance floor, unless overridden)."""
        if retriever is None and artifact.icl_examples:
            retriever = recorded_retriever(
                artifact.icl_examples,
                artifact.icl_retrieval,
                embeddings=embeddings,
                min_similarity=min_similarity,
            )
        budget = artifact.config.get("max_icl_tokens")
        return cls(
            artifact.system_prompt,
            retriever,
            artifact.icl_k if k is None else k,
            budget if isinstance(budget, int) else None,
        )

    def apply(self, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        """The aligned request for ``messages`` (returned as is if it is aligned already)."""
        if messages and messages[0].id == ALIGNED_SYSTEM_ID:
            return list(messages)
        lead = 0
        while lead < len(messages) and isinstance(messages[lead], SystemMessage):
            lead += 1
        own_system = [m for m in messages[:lead] if isinstance(m, SystemMessage)]
        conversation = list(messages[lead:])
        shown = [e.turns() for e in self.examples_for(conversation)]
        system = self._system_message(own_system, icl_layout_note(shown))
        return [system, *icl_messages(shown), *conversation]

    def examples_for(self, conversation: Sequence[BaseMessage]) -> list[ICLExample]:
        """The ICL examples placed before ``conversation`` (retrieved on its user turns)."""
        if self.retriever is None or self.k <= 0:
            return []
        text = retrieval_text(conversation)
        return fit_icl_budget(self.retriever.retrieve(text, self.k), self.max_icl_tokens) if text else []

    def _system_message(self, own: Sequence[SystemMessage], note: str) -> SystemMessage:
        """Our prompt, the app's own system text after it, and ``note`` (on example conversations) last."""
        content: str | list[str | dict[str, Any]]
        if all(isinstance(m.content, str) for m in own):
            content = "\n\n".join(
                [self.system_prompt, *(str(m.content) for m in own if m.content), *filter(None, [note])]
            )
        else:  # content blocks (e.g. a provider's cache markers) are kept as they are, after ours
            content = [{"type": "text", "text": self.system_prompt}]
            for message in own:
                if isinstance(message.content, str):
                    content.append({"type": "text", "text": message.content})
                else:
                    content.extend(message.content)
            if note:
                content.append({"type": "text", "text": note})
        if own:  # the app's message, with its other fields (name, additional_kwargs) kept
            return own[0].model_copy(update={"content": content, "id": ALIGNED_SYSTEM_ID})
        return SystemMessage(content=content, id=ALIGNED_SYSTEM_ID)
