"""The ICL examples' vectors kept in Chroma, ranked as :class:`~drpo_agents.retrieval.InMemoryICLRetriever` ranks them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drpo_agents.embeddings import EmbeddingsLike, embeddings_name, resolve_embeddings
from drpo_agents.memory.base import digest
from drpo_agents.memory.chroma import SPACE, Unreachable
from drpo_agents.retrieval import InMemoryICLRetriever, example_key
from drpo_agents.schemas import ICLExample


class ChromaICLRetriever:
    """The ICL examples in a Chroma collection; the responder retrieves the k most similar queries.

    The collection name is derived from the embeddings and the example set, so different sets
    never mix and the same set is reused (not re-embedded) across runs. Retrieval is exact over
    the stored vectors (read once), with the same relevance floor and ties as
    :class:`InMemoryICLRetriever`, which does the ranking.
    """

    def __init__(
        self,
        examples: Sequence[ICLExample],
        *,
        client: Any,
        embeddings: EmbeddingsLike | None = None,
        min_similarity: float | None = None,
        prefix: str = "drpo-icl",
    ) -> None:
        self.examples = list(examples)
        self.embeddings = resolve_embeddings(embeddings)
        # An example's earlier turns count only when it has some, so sets stored before examples
        # could be conversations keep their collection.
        set_id = digest(
            embeddings_name(self.embeddings),
            *(f"{e.query}\x1e{e.answer}" + (f"\x1e{e.history}" if e.history else "") for e in self.examples),
        )
        ids = [str(i) for i in range(len(self.examples))]
        vectors: list[Any] = []
        with Unreachable():
            self.collection = client.get_or_create_collection(
                f"{prefix}-{set_id}", embedding_function=None, configuration=SPACE
            )
            if self.examples and self.collection.count() != len(self.examples):
                self.collection.upsert(
                    ids=ids,
                    embeddings=self.embeddings.embed_documents([example_key(e) for e in self.examples]),
                    documents=[example_key(e) for e in self.examples],
                )
            if self.examples:
                stored = self.collection.get(ids=ids, include=["embeddings"])
                by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))
                vectors = [by_id[i] for i in ids]
        self._ranked = InMemoryICLRetriever(
            self.examples, self.embeddings, min_similarity=min_similarity, vectors=vectors
        )
        self.min_similarity = self._ranked.min_similarity

    def retrieve(self, query: str, k: int) -> list[ICLExample]:
        """The (at most) ``k`` relevant examples most similar to ``query``, most similar first."""
        return self._ranked.retrieve(query, k)
