"""A process-local critique memory (for runs without a run directory, and for tests)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from drpo_agents.embeddings import EmbeddingsLike, resolve_embeddings
from drpo_agents.memory.base import MEMORY_EMBEDDINGS, Critique
from drpo_agents.memory.table import LESSON_MAX_SCORE, CritiqueTable


class InMemoryCritiqueMemory:
    """Critiques held in this process; same contract and same ranking as Chroma's."""

    def __init__(self, embeddings: EmbeddingsLike | None = None) -> None:
        self.embeddings = resolve_embeddings(MEMORY_EMBEDDINGS if embeddings is None else embeddings)
        self._table = CritiqueTable()
        self._finished: dict[str, str] = {}  # run id -> owner

    def remember(self, critiques: Sequence[Critique]) -> None:
        """Store critiques; identical verdicts within a run (query, aspect, rationale) are kept once."""
        unique: dict[str, Critique] = {}
        for c in critiques:
            if c.record_id not in self._table:
                unique.setdefault(c.record_id, c)
        if unique:
            vectors = self.embeddings.embed_documents([c.document for c in unique.values()])
            self._table.add(list(unique), list(unique.values()), vectors)

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
        """Up to ``k`` distinct low-scoring critiques most similar to ``text`` (see
        :meth:`drpo_agents.memory.base.CritiqueMemory.recall`)."""
        if k <= 0 or not len(self._table):
            return []
        return self._table.recall(
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
        return frozenset(run for run, by in self._finished.items() if by == owner)

    def finish_run(self, run_id: str, owner: str = "") -> None:
        """Record that ``run_id`` finished: ``owner``'s runs started from now on see its critiques."""
        self._finished.setdefault(run_id, owner)

    def critiques_of(self, responder_model: str) -> list[Critique]:
        """Every stored low-scoring critique of ``responder_model``'s answers."""
        return [
            c
            for c in list(self._table.critiques)
            if c.responder_model == responder_model and c.score <= LESSON_MAX_SCORE
        ]

    def __len__(self) -> int:
        return len(self._table)
