"""Chroma-backed ICL retrieval and critique memory.

Embeddings are always computed by a LangChain ``Embeddings`` object that we pass in and
stored explicitly, so Chroma's own default embedding function (which downloads a model) is
never used, and a collection reopened in another process needs no registered function.
Records have deterministic ids and are upserted, so a resumed run that repeats a write
leaves the store unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb

from drpo_agents.errors import ConfigError, ServiceUnavailableError
from drpo_agents.memory.base import Critique
from drpo_agents.retrieval import EmbeddingsLike, as_embeddings
from drpo_agents.schemas import ICLExample

_SPACE = {"hnsw": {"space": "cosine"}}


def chroma_client(location: str | Path | None) -> Any:
    """A Chroma client: ``None`` in-memory, a folder (embedded ``PersistentClient``), or an
    ``http(s)://host:port`` URL of a ``chroma run`` server (``HttpClient``)."""
    if location is None:
        return chromadb.EphemeralClient()
    text = str(location)
    if text.startswith(("http://", "https://")):
        url = urlparse(text)
        if not url.hostname:
            raise ConfigError(f"invalid Chroma server URL: {text!r}")
        try:
            return chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
            )
        except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
            raise ServiceUnavailableError(f"cannot reach the Chroma server at {text}: {exc}") from exc
    Path(text).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=text)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


class ChromaICLRetriever:
    """The ICL examples in a Chroma collection; the responder retrieves the k most similar queries.

    The collection name is derived from the example set, so different sets never mix and the
    same set is reused (not re-embedded) across runs.
    """

    def __init__(
        self,
        examples: Sequence[ICLExample],
        *,
        client: Any,
        embeddings: EmbeddingsLike | None = None,
        prefix: str = "drpo-icl",
    ) -> None:
        self.examples = list(examples)
        self.embeddings = as_embeddings(embeddings)
        set_id = _digest(type(self.embeddings).__name__, *(f"{e.query}\x1e{e.answer}" for e in self.examples))
        self.collection = client.get_or_create_collection(
            f"{prefix}-{set_id}", embedding_function=None, configuration=_SPACE
        )
        if self.examples and self.collection.count() != len(self.examples):
            self.collection.upsert(
                ids=[str(i) for i in range(len(self.examples))],
                embeddings=self.embeddings.embed_documents([e.query for e in self.examples]),
                documents=[e.query for e in self.examples],
            )

    def retrieve(self, query: str, k: int) -> list[ICLExample]:
        """The ``k`` examples whose queries are most similar to ``query``, most similar first."""
        if k <= 0 or not self.examples:
            return []
        # Fetch a wide window and break distance ties by id: the approximate index orders ties
        # arbitrarily, and retrieval must be reproducible across processes (resume).
        result = self.collection.query(
            query_embeddings=[self.embeddings.embed_query(query)],
            n_results=min(len(self.examples), max(8 * k, 64)),
        )
        hits = sorted(
            zip(result["distances"][0], result["ids"][0], strict=True),
            key=lambda h: (round(h[0], 6), int(h[1])),
        )
        return [self.examples[int(i)] for _, i in hits[:k]]


LESSON_MAX_SCORE = 3  # critiques at or below this score are lessons worth showing the rewriter


class ChromaCritiqueMemory:
    """Past critiques in Chroma: every (answer, aspect) verdict in one filterable collection, and
    the low-scoring ones again in a per-responder-model "lessons" collection.

    Metadata of the full collection (run_id, responder_model, aspect, score, level, candidate_id,
    query_id) is filterable with Chroma ``where`` clauses, e.g. ``{"aspect": "Safety"}``. Recall
    for one model searches its lessons collection without a filter: a filtered Chroma query is
    several times slower, and recall runs before every rewrite.
    """

    def __init__(
        self, *, client: Any, embeddings: EmbeddingsLike | None = None, collection: str = "drpo-critiques"
    ) -> None:
        self.client = client
        self.embeddings = as_embeddings(embeddings)
        self.prefix = collection
        self.collection = client.get_or_create_collection(
            collection, embedding_function=None, configuration=_SPACE
        )
        self._lessons: dict[str, Any] = {}

    def _lessons_for(self, responder_model: str) -> Any:
        if responder_model not in self._lessons:
            name = f"{self.prefix}-lessons-{_digest(responder_model)}"
            self._lessons[responder_model] = self.client.get_or_create_collection(
                name, embedding_function=None, configuration=_SPACE
            )
        return self._lessons[responder_model]

    def remember(self, critiques: Sequence[Critique]) -> None:
        """Store critiques (idempotent; identical verdicts within a run are one record)."""
        # Identical verdicts within a run (same query, aspect and rationale for sibling prompts)
        # are one record; the first candidate that earned it is kept.
        unique: dict[str, Critique] = {}
        for c in critiques:
            unique.setdefault(_digest(c.run_id, c.query_id, c.aspect, c.rationale), c)
        if not unique:
            return
        existing = set(self.collection.get(ids=list(unique), include=[])["ids"])
        fresh = {key: c for key, c in unique.items() if key not in existing}
        if not fresh:
            return
        ids = list(fresh)
        items = list(fresh.values())
        documents = [f"{c.query}\n{c.aspect}: {c.rationale}" for c in items]
        vectors = self.embeddings.embed_documents(documents)
        metadatas = [
            {
                "query": c.query,
                "aspect": c.aspect,
                "score": c.score,
                "rationale": c.rationale,
                "run_id": c.run_id,
                "responder_model": c.responder_model,
                "candidate_id": c.candidate_id,
                "level": c.level,
                "query_id": c.query_id,
            }
            for c in items
        ]
        self.collection.upsert(ids=ids, embeddings=vectors, documents=documents, metadatas=metadatas)
        by_model: dict[str, list[int]] = {}
        for index, c in enumerate(items):
            if c.score <= LESSON_MAX_SCORE:
                by_model.setdefault(c.responder_model, []).append(index)
        for model, indexes in by_model.items():
            self._lessons_for(model).upsert(
                ids=[ids[i] for i in indexes],
                embeddings=[vectors[i] for i in indexes],
                documents=[documents[i] for i in indexes],
                metadatas=[metadatas[i] for i in indexes],
            )

    def recall(
        self,
        text: str,
        *,
        k: int,
        responder_model: str | None = None,
        run_id: str | None = None,
        max_score: int = LESSON_MAX_SCORE,
    ) -> list[Critique]:
        """Up to ``k`` distinct low-scoring (``<= max_score``) critiques most similar to ``text``,
        restricted to one responder model and/or one run when those are given."""
        if k <= 0:
            return []
        conditions: list[dict[str, Any]] = []
        if responder_model is not None and max_score <= LESSON_MAX_SCORE:
            collection = self._lessons_for(responder_model)
        else:
            collection = self.collection
            conditions.append({"score": {"$lte": max_score}})
            if responder_model is not None:
                conditions.append({"responder_model": responder_model})
        if run_id is not None:
            conditions.append({"run_id": run_id})
        total = collection.count()
        if total == 0:
            return []
        where = None if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
        # A window wider than k, re-ranked with an id tie-break: the approximate index orders
        # ties arbitrarily, and recall must be reproducible across processes (resume).
        result = collection.query(
            query_embeddings=[self.embeddings.embed_query(text)],
            n_results=min(total, max(8 * k, 40)),
            where=where,
            include=["metadatas", "distances"],
        )
        hits = sorted(
            zip(result["distances"][0], result["ids"][0], result["metadatas"][0], strict=True),
            key=lambda h: (round(float(h[0]), 6), h[1]),
        )
        chosen: list[Critique] = []
        seen: set[tuple[str, str]] = set()
        for _, _, meta in hits:
            if int(meta["score"]) > max_score:
                continue
            key = (str(meta["aspect"]), str(meta["rationale"]))
            if key in seen:
                continue
            seen.add(key)
            chosen.append(
                Critique(
                    query=str(meta["query"]),
                    aspect=str(meta["aspect"]),
                    score=int(meta["score"]),
                    rationale=str(meta["rationale"]),
                    run_id=str(meta["run_id"]),
                    responder_model=str(meta["responder_model"]),
                    candidate_id=str(meta["candidate_id"]),
                    level=int(meta["level"]),
                    query_id=str(meta["query_id"]),
                )
            )
            if len(chosen) == k:
                break
        return chosen

    def count(self, where: dict[str, Any] | None = None) -> int:
        """Number of stored critiques (optionally matching a Chroma ``where`` filter)."""
        if where is None:
            return int(self.collection.count())
        return len(self.collection.get(where=where, include=[])["ids"])
