"""The held-out rule: evaluation queries must not be queries the artifact was optimised on."""

from __future__ import annotations

from collections.abc import Sequence

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.datasets import Query
from drpo_agents.errors import ConfigError


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def _key(user_turns: Sequence[str]) -> str:
    """A query, or a conversation by its user turns (assistant replies differ between setups)."""
    return "\x1f".join(_normalized(t) for t in user_turns)


def _held_out_key(query: Query) -> str:
    if "turns" in query:
        return _key(query["turns"])
    return _key([*(t["content"] for t in query.get("history", []) if t["role"] == "user"), query["query"]])


def training_queries(artifact: AlignmentArtifact) -> set[str]:
    """The key of every query the artifact was optimised with (evaluations and ICL examples); a
    conversation's key is its user turns, so only the same conversation overlaps, not one that
    merely ends with the same words."""
    queries = {
        _key(
            [*(t["content"] for t in artifact.histories.get(e.query_id, []) if t["role"] == "user"), e.query]
        )
        for e in artifact.evaluations
        if e.query.strip()
    }
    return queries | {_key([e.query]) for e in artifact.icl_examples}


class OverlapError(ConfigError):
    """Evaluation queries the artifact was optimised on (``overlap``: their dicts)."""

    def __init__(self, overlap: Sequence[Query], remedy: str = "pass allow_overlap=True") -> None:
        self.overlap = list(overlap)
        shown = "; ".join(f"{q['id']}: {q['query'][:60]!r}" for q in self.overlap[:5])
        super().__init__(
            f"{len(self.overlap)} evaluation quer{'y was' if len(self.overlap) == 1 else 'ies were'} used "
            f"to optimise the artifact (training or ICL queries), so the evaluation would not be held out: "
            f"{shown}. Use different queries, or {remedy} to evaluate anyway."
        )


def check_held_out(queries: Sequence[Query], artifact: AlignmentArtifact) -> None:
    """Refuse evaluation queries that the artifact was optimised on.

    Raises:
        OverlapError: naming the overlapping queries.
    """
    seen = training_queries(artifact)
    overlap = [q for q in queries if _held_out_key(q) in seen]
    if overlap:
        raise OverlapError(overlap)
