"""Exact cosine nearest neighbours over float32 vectors, ranked the same whatever the insertion order."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

DISTANCE_DECIMALS = 6  # distances equal to this many decimals are ties, broken by the rows' keys
SPARSE_DENSITY = 0.125  # stored vectors at most this full (e.g. hashed words) are searched sparsely

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


class VectorTable:
    """Vectors stored as float32 (as Chroma stores them), each with a sortable key, ranked by
    exact cosine distance, ties (to ``DISTANCE_DECIMALS`` decimals) by key.

    ``rank`` is a function of the set of (vector, key) rows, never of the order they were added
    in: every distance that decides the order is computed in float64 as a sum over the vector's
    components in index order, which no other row affects. Sparse vectors (hashed words) are
    summed from a column index (only the query's non-zero components are read); dense ones get a
    float32 matrix product first, and only the rows within its error bound of the cut are
    re-scored exactly.
    """

    def __init__(self) -> None:
        self._matrix: NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        self._norms: FloatArray = np.zeros(0, dtype=np.float64)
        self._keys: list[Any] = []
        self._key_ranks: IntArray | None = None
        self._entries: list[tuple[IntArray, IntArray, FloatArray]] = []  # non-zeros, per add
        self._columns: tuple[IntArray, IntArray, FloatArray] | None = None  # (column starts, rows, values)
        self._nonzeros = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, vectors: Sequence[Sequence[float]] | NDArray[Any], keys: Sequence[Any]) -> None:
        """Append rows with their tie-break keys (all of one sortable type)."""
        with self._lock:  # rewrites may recall from several threads; the lazy indexes are shared
            self._append(vectors, keys)

    def rank(
        self,
        query: Sequence[float],
        *,
        limit: int,
        mask: BoolArray | None = None,
        min_similarity: float | None = None,
    ) -> list[int]:
        """Up to ``limit`` row indexes (among those ``mask`` allows, and with a cosine similarity
        of at least ``min_similarity`` if given), nearest first."""
        with self._lock:
            return self._rank(query, limit, mask, min_similarity)

    def _append(self, vectors: Sequence[Sequence[float]] | NDArray[Any], keys: Sequence[Any]) -> None:
        block = np.asarray(vectors, dtype=np.float32)
        if block.size == 0:
            return
        if block.ndim != 2 or len(block) != len(keys):
            raise ValueError(f"expected {len(keys)} vectors, got an array of shape {block.shape}")
        start, end = len(self), len(self) + len(block)
        if start and block.shape[1] != self._matrix.shape[1]:
            raise ValueError(
                f"embedding has {block.shape[1]} dimensions, the stored ones have {self._matrix.shape[1]}"
            )
        if end > self._matrix.shape[0]:  # grow by doubling: appends stay amortised O(rows added)
            grown = np.zeros((max(end, 2 * self._matrix.shape[0], 256), block.shape[1]), dtype=np.float32)
            norms = np.zeros(grown.shape[0], dtype=np.float64)
            if start:
                grown[:start] = self._matrix[:start]
                norms[:start] = self._norms[:start]
            self._matrix, self._norms = grown, norms
        self._matrix[start:end] = block
        rows, cols = np.nonzero(block)  # row-major: each row's components in index order
        values = block[rows, cols].astype(np.float64)
        squares = np.bincount(rows, weights=values * values, minlength=len(block))
        self._norms[start:end] = np.sqrt(squares)
        self._entries.append((rows.astype(np.int64) + start, cols.astype(np.int64), values))
        self._nonzeros += len(rows)
        self._keys.extend(keys)
        self._key_ranks = None
        self._columns = None

    def _rank(
        self, query: Sequence[float], limit: int, mask: BoolArray | None, min_similarity: float | None
    ) -> list[int]:
        size = len(self)
        if limit <= 0 or size == 0:
            return []
        width = self._matrix.shape[1]
        target = np.asarray(query, dtype=np.float32)
        if target.shape != (width,):
            raise ValueError(f"query has {target.size} dimensions, the stored vectors have {width}")
        exact_target = target.astype(np.float64)
        norms = self._norms[:size]
        scale = np.where(norms > 0, norms, 1.0) * (float(np.sqrt((exact_target * exact_target).sum())) or 1.0)
        allowed = np.ones(size, dtype=bool) if mask is None else mask.copy()
        if self._nonzeros <= SPARSE_DENSITY * size * width:
            cosine = self._sparse_dots(exact_target, size) / scale
        else:
            cosine = np.full(size, -np.inf)
            rows = self._shortlist(target, scale, allowed, limit)
            # A running sum in index order: bit for bit what the sparse path adds up.
            terms = self._matrix[rows].astype(np.float64) * exact_target
            cosine[rows] = np.cumsum(terms, axis=1)[:, -1] / scale[rows]
            allowed[:] = False
            allowed[rows] = True
        distances = np.where(allowed, np.round(1.0 - cosine, DISTANCE_DECIMALS), np.inf)
        if min_similarity is not None:
            distances[distances > round(1.0 - min_similarity, DISTANCE_DECIMALS)] = np.inf
        return self._nearest(distances, limit)

    def _sparse_dots(self, target: FloatArray, size: int) -> FloatArray:
        """Exact dot products from the column index: each row's terms are added in column order."""
        starts, rows, values = self._column_index(target.shape[0])
        columns = np.flatnonzero(target)
        lengths = starts[columns + 1] - starts[columns]
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(size)
        first = np.repeat(starts[columns] - (np.cumsum(lengths) - lengths), lengths)
        picked = first + np.arange(total)
        weights = values[picked] * np.repeat(target[columns], lengths)
        return np.asarray(np.bincount(rows[picked], weights=weights, minlength=size), dtype=np.float64)

    def _column_index(self, width: int) -> tuple[IntArray, IntArray, FloatArray]:
        if self._columns is None:
            rows = np.concatenate([e[0] for e in self._entries])
            cols = np.concatenate([e[1] for e in self._entries])
            values = np.concatenate([e[2] for e in self._entries])
            order = np.argsort(cols.astype(np.int16 if width < 2**15 else np.int32), kind="stable")  # radix
            starts = np.zeros(width + 1, dtype=np.int64)
            np.cumsum(np.bincount(cols, minlength=width), out=starts[1:])
            self._columns = (starts, rows[order], values[order])
            self._entries = [(rows, cols, values)]
        return self._columns

    def _shortlist(
        self, target: NDArray[np.float32], scale: FloatArray, allowed: BoolArray, limit: int
    ) -> IntArray:
        """Rows whose float32 cosine is within its error bound of the ``limit``-th best: a superset
        of the exact top ``limit`` (float32 error <= dimensions x 2^-24 for a cosine)."""
        coarse = (self._matrix[: len(self)] @ target).astype(np.float64) / scale
        coarse[~allowed] = -np.inf
        eligible = int(np.count_nonzero(allowed))
        if eligible <= limit:
            return np.flatnonzero(allowed)
        cut = float(np.partition(coarse, len(coarse) - limit)[len(coarse) - limit])
        tolerance = 2 * self._matrix.shape[1] * 2.0**-24 + 2 * 10.0**-DISTANCE_DECIMALS
        return np.flatnonzero(coarse >= cut - tolerance)

    def _nearest(self, distances: FloatArray, limit: int) -> list[int]:
        """The ``limit`` finite distances' rows by (distance, key rank)."""
        ranks = self._ranks()
        finite = np.flatnonzero(np.isfinite(distances))
        if len(finite) > limit:
            cut = float(np.partition(distances, limit - 1)[limit - 1])
            better = np.flatnonzero(distances < cut)
            tied = np.flatnonzero(distances == cut)
            need = limit - len(better)
            if len(tied) > need:
                tied = tied[np.argpartition(ranks[tied], need - 1)[:need]]
            finite = np.concatenate([better, tied])
        order = np.lexsort((ranks[finite], distances[finite]))
        return [int(row) for row in finite[order]]

    def _ranks(self) -> IntArray:
        if self._key_ranks is None:
            ranks = np.empty(len(self._keys), dtype=np.int64)
            ranks[sorted(range(len(self._keys)), key=self._keys.__getitem__)] = np.arange(len(self._keys))
            self._key_ranks = ranks
        return self._key_ranks
