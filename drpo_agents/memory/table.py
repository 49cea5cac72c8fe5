"""Critiques with their vectors and exact, filtered recall: the one ranking every critique memory uses."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from drpo_agents.memory.base import Critique
from drpo_agents.vectors import VectorTable

LESSON_MAX_SCORE = 3  # critiques at or below this score are lessons worth showing the rewriter


class CritiqueTable:
    """Critiques by record id with their float32 vectors; recall is exact cosine ranking with
    ties broken by content (:attr:`Critique.content_key`, then record id), so it depends on the
    set of records, not on their insertion order or the run ids in them.

    Thread-safe: a level's critiques are stored (``add``) while the next level's rewrites recall.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.vectors = VectorTable()
        self.ids: list[str] = []
        self.critiques: list[Critique] = []
        self._rows: dict[str, int] = {}
        self._codes: dict[str, int] = {}  # run ids and model names as small integers, for masks
        self._columns: list[tuple[int, int, int, int]] = []  # (score, level, run code, model code)
        self._arrays: NDArray[np.int64] | None = None  # _columns as an array, rebuilt after a write

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._rows

    def add(self, ids: Sequence[str], critiques: Sequence[Critique], vectors: Any) -> None:
        """Add records; an id already present keeps its stored version (the first one wins)."""
        with self._lock:
            self._add(ids, critiques, vectors)

    def _add(self, ids: Sequence[str], critiques: Sequence[Critique], vectors: Any) -> None:
        first: dict[str, int] = {}
        for i, record_id in enumerate(ids):
            if record_id not in self._rows:
                first.setdefault(record_id, i)
        fresh = list(first.values())
        if not fresh:
            return
        keys = [(critiques[i].content_key, ids[i]) for i in fresh]
        self.vectors.add(np.asarray(vectors, dtype=np.float32)[fresh], keys)
        for i in fresh:
            c = critiques[i]
            self._rows[ids[i]] = len(self.ids)
            self.ids.append(ids[i])
            self.critiques.append(c)
            self._columns.append((c.score, c.level, self._code(c.run_id), self._code(c.responder_model)))
        self._arrays = None

    def _code(self, name: str) -> int:
        return self._codes.setdefault(name, len(self._codes))

    def recall(
        self,
        query: Sequence[float],
        *,
        k: int,
        responder_model: str | None = None,
        run_id: str | None = None,
        max_score: int = LESSON_MAX_SCORE,
        horizon: tuple[str, int] | None = None,
        runs: Collection[str] | None = None,
    ) -> list[Critique]:
        """See :meth:`drpo_agents.memory.base.CritiqueMemory.recall` (and ``runs``,
        :class:`drpo_agents.memory.base.RunLedger`); ``query`` is the embedded text."""
        with self._lock:
            return self._recall(query, k, responder_model, run_id, max_score, horizon, runs)

    def _recall(
        self,
        query: Sequence[float],
        k: int,
        responder_model: str | None,
        run_id: str | None,
        max_score: int,
        horizon: tuple[str, int] | None,
        runs: Collection[str] | None,
    ) -> list[Critique]:
        if k <= 0 or not self.ids:
            return []
        mask = self._mask(responder_model, run_id, max_score, horizon, runs)
        if mask is None:
            return []
        chosen: list[Critique] = []
        limit = max(8 * k, 40)
        while True:
            rows = self.vectors.rank(query, limit=limit, mask=mask)
            chosen, seen = [], set()
            for row in rows:
                c = self.critiques[row]
                if (c.aspect, c.rationale) not in seen:
                    seen.add((c.aspect, c.rationale))
                    chosen.append(c)
                    if len(chosen) == k:
                        return chosen
            if len(rows) < limit:  # every allowed record was ranked
                return chosen
            limit *= 4  # many repeats of the same verdict: look further

    def _mask(
        self,
        responder_model: str | None,
        run_id: str | None,
        max_score: int,
        horizon: tuple[str, int] | None,
        visible: Collection[str] | None,
    ) -> NDArray[np.bool_] | None:
        """Which rows the filters allow; ``None`` when a named run or model has no record at all."""
        if self._arrays is None:
            self._arrays = np.asarray(self._columns, dtype=np.int64).reshape(-1, 4)
        scores, levels, run_codes, models = self._arrays.T
        mask: NDArray[np.bool_] = scores <= max_score
        if responder_model is not None:
            if responder_model not in self._codes:
                return None
            mask &= models == self._codes[responder_model]
        if run_id is not None:
            if run_id not in self._codes:
                return None
            mask &= run_codes == self._codes[run_id]
        if visible is not None:
            names = {*visible, *([horizon[0]] if horizon is not None else [])}
            mask &= np.isin(run_codes, [self._codes[name] for name in names if name in self._codes])
        if horizon is not None and horizon[0] in self._codes:
            mask &= ~((run_codes == self._codes[horizon[0]]) & (levels >= horizon[1]))
        return mask
