"""A process-local critique memory (for runs without a run directory, and for tests)."""

from __future__ import annotations

from collections.abc import Sequence

from drpo_agents.memory.base import Critique
from drpo_agents.retrieval import EmbeddingsLike, as_embeddings


class InMemoryCritiqueMemory:
    """Critiques in a Python list, retrieved by cosine similarity; same contract as Chroma's."""

    def __init__(self, embeddings: EmbeddingsLike | None = None) -> None:
        self.embeddings = as_embeddings(embeddings)
        self._records: dict[tuple[str, str, str, str], tuple[Critique, list[float]]] = {}

    def remember(self, critiques: Sequence[Critique]) -> None:
        """Store critiques; identical verdicts within a run (query, aspect, rationale) are kept once."""
        unique: dict[tuple[str, str, str, str], Critique] = {}
        for c in critiques:
            unique.setdefault((c.run_id, c.query_id, c.aspect, c.rationale), c)
        fresh = {key: c for key, c in unique.items() if key not in self._records}
        vectors = self.embeddings.embed_documents(
            [f"{c.query}\n{c.aspect}: {c.rationale}" for c in fresh.values()]
        )
        for (key, critique), vector in zip(fresh.items(), vectors, strict=True):
            self._records[key] = (critique, vector)

    def recall(
        self,
        text: str,
        *,
        k: int,
        responder_model: str | None = None,
        run_id: str | None = None,
        max_score: int = 3,
    ) -> list[Critique]:
        """Up to ``k`` distinct low-scoring critiques most similar to ``text``."""
        if k <= 0 or not self._records:
            return []
        target = self.embeddings.embed_query(text)
        scored = sorted(
            (
                (-sum(a * b for a, b in zip(target, vector, strict=True)), key, critique)
                for key, (critique, vector) in self._records.items()
                if critique.score <= max_score
                and (responder_model is None or critique.responder_model == responder_model)
                and (run_id is None or critique.run_id == run_id)
            ),
            key=lambda item: (round(item[0], 6), "\x1f".join(item[1])),
        )
        chosen: list[Critique] = []
        seen: set[tuple[str, str]] = set()
        for _, _, critique in scored:
            if (critique.aspect, critique.rationale) not in seen:
                seen.add((critique.aspect, critique.rationale))
                chosen.append(critique)
            if len(chosen) == k:
                break
        return chosen

    def __len__(self) -> int:
        return len(self._records)
