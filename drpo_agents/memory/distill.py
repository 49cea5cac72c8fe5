"""Distilled lessons: the failures that recur in earlier runs' critiques, as a few general rules per
responder model, each with the count of queries it recurred on (after ExpeL's insight rules).

The rule book is a pure function of the stored critiques, recomputed when a run starts, so it needs
no storage of its own, reads the same in every process and cannot drift from the memory:

* a rule is *added* when failures of one aspect with similar rationales recur on at least
  ``min_queries`` queries;
* it is *upvoted* each time the failure recurs on another query (its count) or in another run;
* it is *edited* when its cluster grows: its text is the most central rationale of the cluster;
* it is *downvoted* (and dropped) when the failure stops recurring: rules are ranked by count and
  only the top ``max_rules`` are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

import numpy as np

from drpo_agents.embeddings import EmbeddingsLike, resolve_embeddings
from drpo_agents.memory.base import MEMORY_EMBEDDINGS, Critique

SIMILAR = 0.5  # cosine of two rationales' vectors (lexical by default) that makes them one failure


@dataclass(frozen=True)
class Rule:
    """One general lesson: a recurring failure of one aspect."""

    aspect: str
    text: str  # the cluster's most central rationale
    score: int  # the median score of its critiques
    queries: int  # distinct queries it recurred on: its count
    runs: tuple[str, ...]  # the runs it was learned in, sorted

    def as_lesson(self) -> str:
        """How the rewriter is shown the rule (tagged like a specific critique)."""
        seen = f"recurred on {self.queries} queries in {len(self.runs)} run{'s' * (len(self.runs) != 1)}"
        return f"[{self.aspect} {self.score}/5] general lesson ({seen}): {self.text}"


def distil_rules(
    critiques: Sequence[Critique],
    *,
    embeddings: EmbeddingsLike | None = None,
    min_queries: int = 3,
    max_rules: int = 3,
) -> list[Rule]:
    """The rule book of ``critiques`` (one responder model's low-scoring ones): recurring failures,
    most recurrent first (ties: more runs, then aspect and text), at most ``max_rules``."""
    if max_rules <= 0 or not critiques:
        return []
    embedder = resolve_embeddings(MEMORY_EMBEDDINGS if embeddings is None else embeddings)
    # The order clusters form in: content, not time or run ids.
    ordered = sorted(critiques, key=lambda c: (c.content_key, c.record_id))
    vectors = _unit(embedder.embed_documents([f"{c.aspect}: {c.rationale}" for c in ordered]))
    rules: list[Rule] = []
    for aspect in sorted({c.aspect for c in ordered}):
        rows = [i for i, c in enumerate(ordered) if c.aspect == aspect]
        for cluster in _clusters(rows, vectors):
            members = [ordered[i] for i in cluster]
            queries = len({c.query_id if c.query_id else c.query for c in members})
            if queries < min_queries:
                continue
            centre = max(cluster, key=lambda i: (float((vectors[cluster] @ vectors[i]).sum()), -i))
            rules.append(
                Rule(
                    aspect=aspect,
                    text=ordered[centre].rationale,
                    score=round(median(c.score for c in members)),
                    queries=queries,
                    runs=tuple(sorted({c.run_id for c in members})),
                )
            )
    rules.sort(key=lambda r: (-r.queries, -len(r.runs), r.aspect, r.text))
    return rules[:max_rules]


def _unit(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1, norms)


def _clusters(rows: list[int], vectors: np.ndarray) -> list[list[int]]:
    """Leader clustering: each row joins the first cluster whose leader it resembles, else leads one."""
    clusters: list[list[int]] = []
    for row in rows:
        for cluster in clusters:
            if float(vectors[cluster[0]] @ vectors[row]) >= SIMILAR:
                cluster.append(row)
                break
        else:
            clusters.append([row])
    return clusters
