"""Retrieving the ICL examples relevant to a query: the k most similar that clear a relevance floor.

The search (responder calls), the evaluation harness and :func:`drpo_agents.with_alignment` all
retrieve through :class:`InMemoryICLRetriever` (or the Chroma-stored :class:`ChromaICLRetriever`,
which ranks the same way), so the search optimizes what an app runs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage, HumanMessage

from drpo_agents.artifact import ICLRetrievalRecord
from drpo_agents.conversations import history_messages
from drpo_agents.embeddings import EmbeddingsLike, embeddings_name, relevance_floor, resolve_embeddings
from drpo_agents.prompts import approx_tokens
from drpo_agents.schemas import ICLExample
from drpo_agents.vectors import VectorTable

CONTEXT_TURNS = 2
"""How many earlier user turns a follow-up is retrieved with."""
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_FOLLOW_UP_STARTS = frozenset(["and", "but", "so", "or", "also", "then"])
_REFERRING = frozenset(
    [
        "it",
        "its",
        "it's",
        "that",
        "this",
        "those",
        "these",
        "they",
        "them",
        "their",
        "there",
        "he",
        "she",
        "him",
        "her",
        "one",
        "ones",
    ]
)


def is_follow_up(turn: str) -> bool:
    """Whether a user turn leans on the conversation before it: fewer than four words ("why?",
    "and in Python?"), a leading "and" / "but" / "so" / "also", "what about" / "how about", or a
    word that refers back ("it", "that", "they", ...). "What is the capital of France?" does not."""
    words = _WORD.findall(turn.casefold())
    if len(words) < 4 or words[0] in _FOLLOW_UP_STARTS or words[:2] in (["what", "about"], ["how", "about"]):
        return True
    return any(word in _REFERRING for word in words)


@runtime_checkable
class ICLRetriever(Protocol):
    """Anything that returns the (at most k) ICL examples relevant to a query, most relevant first."""

    def retrieve(self, query: str, k: int) -> list[ICLExample]: ...


def fit_icl_budget(examples: Sequence[ICLExample], max_tokens: int | None) -> list[ICLExample]:
    """The examples (in their order of relevance) that fit in ``max_tokens``; an example too large
    for what is left is skipped, so a smaller, less similar one may still fit. ``None``: all."""
    if max_tokens is None:
        return list(examples)
    kept: list[ICLExample] = []
    left = max_tokens
    for example in examples:
        size = example_tokens(example)
        if size <= left:
            kept.append(example)
            left -= size
    return kept


def retrieval_text(conversation: Sequence[BaseMessage]) -> str:
    """The text ICL examples are retrieved by: the last user turn alone, or, when it is a follow-up
    (:func:`is_follow_up`), preceded by the earlier user turns back to the last one that stands
    alone (at most :data:`CONTEXT_TURNS`). Assistant turns and tool results are left out: they
    are long and say little about what the user is asking. Empty without a user turn."""
    user_turns = [m.text.strip() for m in conversation if isinstance(m, HumanMessage) and m.text.strip()]
    if not user_turns:
        return ""
    chosen = [user_turns[-1]]
    for earlier in reversed(user_turns[:-1]):
        if len(chosen) > CONTEXT_TURNS or not is_follow_up(chosen[0]):
            break
        chosen.insert(0, earlier)
    return "\n".join(chosen)


def example_tokens(example: ICLExample) -> int:
    """The (approximate) tokens ``example`` takes in context, its earlier turns included."""
    return sum(approx_tokens(turn["content"]) for turn in example.turns())


def example_key(example: ICLExample) -> str:
    """The text an example is found by: its query, retrieved on as a conversation's last turn is
    (:func:`retrieval_text`), so an example that is a conversation is matched on the user's turns."""
    if not example.history:
        return example.query
    return retrieval_text([*history_messages(example.history), HumanMessage(example.query)])


class InMemoryICLRetriever:
    """Exact cosine-similarity retrieval over a small in-memory set of ICL examples.

    Args:
        examples: the ICL examples.
        embeddings: a name (``"minilm"``, the default, or ``"hashing"``), LangChain
            ``Embeddings`` or a Chroma embedding function.
        min_similarity: the relevance floor: an example less similar to the query than this
            (cosine) is never placed in context, so a query unlike every example gets fewer
            examples or none. ``None``: the embeddings' calibrated floor
            (:func:`drpo_agents.embeddings.relevance_floor`).
        vectors: the examples' query vectors, if already computed with ``embeddings`` (the Chroma
            retriever passes the stored ones).
    """

    def __init__(
        self,
        examples: Sequence[ICLExample],
        embeddings: EmbeddingsLike | None = None,
        *,
        min_similarity: float | None = None,
        vectors: Sequence[Sequence[float]] | None = None,
    ) -> None:
        self.examples = list(examples)
        self.embeddings: Embeddings = resolve_embeddings(embeddings)
        self.min_similarity = relevance_floor(self.embeddings) if min_similarity is None else min_similarity
        self._table = VectorTable()
        if self.examples:
            if vectors is None:
                vectors = self.embeddings.embed_documents([example_key(e) for e in self.examples])
            self._table.add(vectors, list(range(len(self.examples))))

    def retrieve(self, query: str, k: int) -> list[ICLExample]:
        """The (at most) ``k`` examples most similar to ``query`` that clear the relevance floor,
        most similar first (ties by the examples' order, so retrieval is deterministic)."""
        if k <= 0 or not self.examples or not query.strip():
            return []
        rows = self._table.rank(
            self.embeddings.embed_query(query), limit=k, min_similarity=self.min_similarity
        )
        return [self.examples[row] for row in rows]


def recorded_retriever(
    examples: Sequence[ICLExample],
    record: ICLRetrievalRecord | None,
    *,
    embeddings: EmbeddingsLike | None = None,
    min_similarity: float | None = None,
) -> InMemoryICLRetriever:
    """A retriever that retrieves as a finished search did (``record``, from its artifact): the
    same packaged embeddings and relevance floor, unless ``embeddings`` or ``min_similarity`` are
    given. A search that used custom embeddings cannot be rebuilt by name: a warning says so and
    the packaged MiniLM is used, unless ``embeddings`` are passed."""
    if embeddings is None and record is not None:
        if record.embeddings.startswith(("minilm", "hashing")):
            embeddings = record.embeddings
        else:
            warnings.warn(
                f"the search retrieved these ICL examples with {record.embeddings}; pass embeddings= to "
                "retrieve them the same way (the packaged MiniLM is used instead)",
                UserWarning,
                stacklevel=3,
            )
    resolved = resolve_embeddings(embeddings)
    if min_similarity is None and record is not None and embeddings_name(resolved) == record.embeddings:
        min_similarity = record.min_similarity
    return InMemoryICLRetriever(examples, resolved, min_similarity=min_similarity)
