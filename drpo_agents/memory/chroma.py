"""Chroma-backed ICL retrieval and critique memory.

Embeddings are always computed by a LangChain ``Embeddings`` object that we pass in and
stored explicitly, so Chroma's own default embedding function (which downloads a model) is
never used, and a collection reopened in another process needs no registered function.
Records have deterministic ids and are upserted, so a resumed run that repeats a write
leaves the store unchanged. Ranking is exact and in-process (:mod:`drpo_agents.vectors`), never
Chroma's approximate index, so what is found depends only on what is stored.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import Any

from drpo_agents.embeddings import EmbeddingsLike, resolve_embeddings
from drpo_agents.errors import ServiceUnavailableError
from drpo_agents.memory.base import MEMORY_EMBEDDINGS, Critique, digest
from drpo_agents.memory.table import LESSON_MAX_SCORE, CritiqueTable

SPACE = {"hnsw": {"space": "cosine"}}
# The lessons collections are our own index (recall ranks the in-process mirror, never Chroma's
# HNSW graph): a sparse graph and no documents (full-text index) halve the cost of a write.
_LESSONS_SPACE = {"hnsw": {"space": "cosine", "ef_construction": 8, "max_neighbors": 4}}


_LEDGER_VECTOR = [1.0]  # a ledger entry is its id; Chroma stores a vector with every record
PAGE = 5000  # records per Chroma read when a mirror is loaded


class Unreachable:
    """Turns a lost Chroma server (connection refused or dropped) into ``ServiceUnavailableError``."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and _is_connection_error(exc):
            raise ServiceUnavailableError(f"the Chroma server stopped answering: {exc}") from exc


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return True
    return "could not connect to a chroma server" in str(exc).casefold()


class ChromaCritiqueMemory:
    """Past critiques in Chroma: every (answer, aspect) verdict in one filterable collection, and
    the low-scoring ones again in a per-responder-model "lessons" collection.

    Metadata of the full collection (run_id, responder_model, aspect, score, level, candidate_id,
    query_id) is filterable with Chroma ``where`` clauses, e.g. ``{"aspect": "Safety"}``.

    Recall is exact, not Chroma's approximate (HNSW) search, whose answers depend on the order the
    index was built in: the searched collection (one model's lessons, or the full collection for
    other filters) is mirrored in this process (read at the first recall, extended by our own
    writes, re-read after a ``remember`` when its count shows another process wrote) and ranked
    by :class:`CritiqueTable`, the same ranking as :class:`InMemoryCritiqueMemory`. Storage stays
    in Chroma; the lessons collections keep metadata and vectors, no documents.

    ``remember`` may run in one thread while ``recall`` runs in another (a search stores a level's
    critiques beside the next level's rewrites).
    """

    def __init__(
        self, *, client: Any, embeddings: EmbeddingsLike | None = None, collection: str = "drpo-critiques"
    ) -> None:
        self.client = client
        self.embeddings = resolve_embeddings(MEMORY_EMBEDDINGS if embeddings is None else embeddings)
        self.prefix = collection
        with Unreachable():
            self.collection = client.get_or_create_collection(
                collection, embedding_function=None, configuration=SPACE
            )
        self._lessons: dict[str, Any] = {}
        self._runs: Any = None  # the finished runs' ledger, opened on first use
        self._mirrors: dict[str, CritiqueTable] = {}  # by collection name
        self._lock = threading.RLock()  # our writes and mirror loads; recalls only take the table's

    def _lessons_for(self, responder_model: str) -> Any:
        if responder_model not in self._lessons:
            name = f"{self.prefix}-lessons-{digest(responder_model)}"
            self._lessons[responder_model] = self.client.get_or_create_collection(
                name, embedding_function=None, configuration=_LESSONS_SPACE
            )
        return self._lessons[responder_model]

    def remember(self, critiques: Sequence[Critique]) -> None:
        """Store critiques (idempotent; identical verdicts within a run are one record, and the
        stored version of a record is kept: the first candidate that earned it).

        Rerunning a batch interrupted between the two collections' writes completes both: the
        lessons are written from the stored records, whether this call or an earlier one stored them.
        Afterwards the mirrors are re-read if another process wrote (once per call, so a search
        checks once per level, not at every recall).
        """
        unique: dict[str, Critique] = {}
        for c in critiques:
            unique.setdefault(c.record_id, c)
        if not unique:
            return
        with Unreachable():
            existing = set(self.collection.get(ids=list(unique), include=[])["ids"])
            fresh = [key for key in unique if key not in existing]
            vectors: dict[str, Any] = {}
            if fresh:
                embedded = self.embeddings.embed_documents([unique[key].document for key in fresh])
                vectors = dict(zip(fresh, embedded, strict=True))
                self._write(self.collection, fresh, [unique[key] for key in fresh], embedded)
            # The stored version of a record decides (and fills) its lessons entry.
            stored = {key: unique[key] for key in fresh}
            if existing:
                found = self.collection.get(ids=sorted(existing), include=["metadatas"])
                stored.update(
                    (key, _critique(meta)) for key, meta in zip(found["ids"], found["metadatas"], strict=True)
                )
            by_model: dict[str, list[str]] = {}
            for key in unique:
                if stored[key].score <= LESSON_MAX_SCORE:
                    by_model.setdefault(stored[key].responder_model, []).append(key)
            for model, keys in by_model.items():
                lessons = self._lessons_for(model)
                # A lesson is written after its full record, so only a record stored before this
                # call (by an interrupted one) can have its lesson already.
                earlier = [key for key in keys if key in existing]
                present = set(lessons.get(ids=earlier, include=[])["ids"]) if earlier else set()
                missing = [key for key in keys if key not in present]
                absent = [key for key in missing if key not in vectors]  # stored by an interrupted call
                if absent:
                    found = self.collection.get(ids=absent, include=["embeddings"])
                    vectors.update(zip(found["ids"], found["embeddings"], strict=True))
                if missing:
                    self._write(
                        lessons,
                        missing,
                        [stored[key] for key in missing],
                        [vectors[key] for key in missing],
                        documents=False,
                    )
            self._refresh_mirrors()

    def _write(
        self,
        collection: Any,
        ids: list[str],
        items: list[Critique],
        vectors: Sequence[Any],
        *,
        documents: bool = True,
    ) -> None:
        floats = [[float(x) for x in v] for v in vectors]
        # Under the lock, so a mirror loaded meanwhile either holds these records or gets them here.
        with self._lock:
            collection.upsert(
                ids=ids,
                embeddings=floats,
                documents=[c.document for c in items] if documents else None,
                metadatas=[_metadata(c) for c in items],
            )
            mirror = self._mirrors.get(collection.name)
            if mirror is not None:  # float32 in the table: the values Chroma stored
                mirror.add(ids, items, floats)

    def _refresh_mirrors(self) -> None:
        for collection in [self.collection, *self._lessons.values()]:
            mirror = self._mirrors.get(collection.name)
            if mirror is not None and int(collection.count()) != len(mirror):
                self._load_mirror(collection)

    def recall(
        self,
        text: str,
        *,
        k: int,
        responder_model: str | None = None,
        run_id: str | None = None,
        max_score: int = LESSON_MAX_SCORE,
        horizon: tuple[str, int] | None = None,
        runs: Collection[str] | None = None,
    ) -> list[Critique]:
        """Up to ``k`` distinct low-scoring (``<= max_score``) critiques most similar to ``text``,
        restricted to one responder model and/or one run when those are given; see
        :meth:`drpo_agents.memory.base.CritiqueMemory.recall` for ``horizon`` and
        :class:`drpo_agents.memory.base.RunLedger` for ``runs``."""
        if k <= 0:
            return []
        with Unreachable():
            if responder_model is not None and max_score <= LESSON_MAX_SCORE:
                mirror = self._mirror(self._lessons_for(responder_model))  # smaller: every row qualifies
            else:
                mirror = self._mirror(self.collection)
        if not len(mirror):
            return []
        return mirror.recall(
            self.embeddings.embed_query(text),
            k=k,
            responder_model=responder_model,
            run_id=run_id,
            max_score=max_score,
            horizon=horizon,
            runs=runs,
        )

    def finished_runs(self, owner: str = "") -> frozenset[str]:
        """The finished runs of ``owner`` (see :class:`drpo_agents.memory.base.RunLedger`)."""
        with Unreachable():
            found = self._ledger().get(include=["metadatas"])
        metadatas = found["metadatas"] or [None] * len(found["ids"])
        return frozenset(
            run
            for run, meta in zip(found["ids"], metadatas, strict=True)
            if (meta or {}).get("owner", "") == owner
        )

    def finish_run(self, run_id: str, owner: str = "") -> None:
        """Record that ``run_id`` finished: ``owner``'s runs started from now on see its critiques
        (idempotent)."""
        with Unreachable():
            self._ledger().upsert(ids=[run_id], embeddings=[_LEDGER_VECTOR], metadatas=[{"owner": owner}])

    def _ledger(self) -> Any:
        """The finished runs' collection (run ids, each with its owner). A memory written before the ledger existed
        gets one that names every run it holds: those runs wrote before any run of this version."""
        if self._runs is None:
            name = f"{self.prefix}-runs"
            known = {c.name for c in self.client.list_collections()}
            ledger = self.client.get_or_create_collection(name, embedding_function=None)
            if name not in known and int(self.collection.count()):
                earlier = {c.run_id for c in self._mirror(self.collection).critiques}
                ledger.upsert(
                    ids=sorted(earlier),
                    embeddings=[_LEDGER_VECTOR] * len(earlier),
                    metadatas=[{"owner": ""}] * len(earlier),
                )
            self._runs = ledger
        return self._runs

    def critiques_of(self, responder_model: str) -> list[Critique]:
        """Every stored low-scoring critique of ``responder_model``'s answers (its lessons collection)."""
        with Unreachable():
            return list(self._mirror(self._lessons_for(responder_model)).critiques)

    def _mirror(self, collection: Any) -> CritiqueTable:
        """This process's image of ``collection``: read once, then kept in step by our writes and
        re-read by :meth:`remember` when another process wrote."""
        mirror = self._mirrors.get(collection.name)
        return mirror if mirror is not None else self._load_mirror(collection)

    def _load_mirror(self, collection: Any) -> CritiqueTable:
        with self._lock:
            count = int(collection.count())
            mirror = None
            while mirror is None or len(mirror) != count:
                mirror = CritiqueTable()
                for offset in range(0, count, PAGE):
                    page = collection.get(include=["embeddings", "metadatas"], limit=PAGE, offset=offset)
                    mirror.add(page["ids"], [_critique(m) for m in page["metadatas"]], page["embeddings"])
                count = int(collection.count())  # another process wrote while we read: read again
            self._mirrors[collection.name] = mirror
            return mirror

    def count(self, where: dict[str, Any] | None = None) -> int:
        """Number of stored critiques (optionally matching a Chroma ``where`` filter)."""
        with Unreachable():
            if where is None:
                return int(self.collection.count())
            return len(self.collection.get(where=where, include=[])["ids"])


def _metadata(c: Critique) -> dict[str, str | int]:
    return {
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


def _critique(meta: Any) -> Critique:
    return Critique(
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
