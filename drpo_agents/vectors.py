"""Exact cosine nearest neighbours over float32 vectors, ranked the same whatever the insertion order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

DISTANCE_DECIMALS = 6  # distances equal to this many decimals are ties, broken by the caller's key

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


class VectorTable:
    """Vectors stored as float32 (as Chroma stores them), ranked by exact cosine distance.

    ``rank`` is a function of the set of (vector, tie key) rows, never of the order they were
    added in: a fast float32 pass picks a shortlist wide enough to hold every row that can rank
    within the limit, and those rows are re-scored one by one in float64 (a per-row sum, so a
    row's distance does not depend on its position) and sorted by (rounded distance, key).
    """

    def __init__(self) -> None:
        self._matrix: NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        self._norms: FloatArray = np.zeros(0, dtype=np.float64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def dimensions(self) -> int | None:
        return int(self._matrix.shape[1]) if self._size else None

    def add(self, vectors: Sequence[Sequence[float]] | NDArray[Any]) -> None:
        """Append rows (row ``i`` of the table is the ``i``-th vector ever added)."""
        block = np.asarray(vectors, dtype=np.float32)
        if block.size == 0:
            return
        if block.ndim != 2:
            raise ValueError(f"expected a list of vectors, got an array of shape {block.shape}")
        width = self.dimensions
        if width is not None and block.shape[1] != width:
            raise ValueError(f"embedding has {block.shape[1]} dimensions, the stored ones have {width}")
        end = self._size + len(block)
        if end > self._matrix.shape[0]:  # grow by doubling: appends stay amortised O(rows added)
            grown = np.zeros((max(end, 2 * self._matrix.shape[0], 256), block.shape[1]), dtype=np.float32)
            if self._size:
                grown[: self._size] = self._matrix[: self._size]
            norms = np.zeros(grown.shape[0], dtype=np.float64)
            norms[: self._size] = self._norms[: self._size]
            self._matrix, self._norms = grown, norms
        self._matrix[self._size : end] = block
        wide = block.astype(np.float64)
        self._norms[self._size : end] = np.sqrt((wide * wide).sum(axis=1))
        self._size = end

    def rank(
        self,
        query: Sequence[float],
        *,
        limit: int,
        key: Callable[[int], Any],
        mask: BoolArray | None = None,
    ) -> list[int]:
        """Up to ``limit`` row indexes (among those ``mask`` allows), nearest first; rows whose
        cosine distances agree to ``DISTANCE_DECIMALS`` decimals are ordered by ``key(row)``."""
        if limit <= 0 or self._size == 0:
            return []
        target = np.asarray(query, dtype=np.float32)
        if target.shape != (self._matrix.shape[1],):
            raise ValueError(
                f"query has {target.size} dimensions, the stored vectors have {self._matrix.shape[1]}"
            )
        exact_target = target.astype(np.float64)
        target_norm = float(np.sqrt((exact_target * exact_target).sum()))
        norms = self._norms[: self._size]
        denominators = np.where(norms > 0, norms, 1.0) * (target_norm or 1.0)
        # Fast pass in float32 (its rounding error is far below the tolerance), masked rows last.
        coarse = (self._matrix[: self._size] @ target).astype(np.float64) / denominators
        if mask is not None:
            coarse[~mask] = -np.inf
        eligible = int(np.count_nonzero(coarse > -np.inf))
        if eligible == 0:
            return []
        if eligible > limit:
            cut = float(np.partition(coarse, self._size - limit)[self._size - limit])
            tolerance = max(1e-3, self._matrix.shape[1] * 2.0**-20)
            rows = np.flatnonzero(coarse >= cut - tolerance)
        else:
            rows = np.flatnonzero(coarse > -np.inf)
        exact = (self._matrix[rows].astype(np.float64) * exact_target).sum(axis=1) / denominators[rows]
        distances = np.round(1.0 - exact, DISTANCE_DECIMALS)
        order = sorted(range(len(rows)), key=lambda i: (float(distances[i]), key(int(rows[i]))))
        return [int(rows[i]) for i in order[:limit]]
