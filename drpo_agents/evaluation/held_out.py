"""The held-out rule: evaluation queries must not be queries the artifact was optimised on."""

from __future__ import annotations

from collections.abc import Sequence

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.errors import ConfigError


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def training_queries(artifact: AlignmentArtifact) -> set[str]:
    """Normalised text of every query the artifact was optimised with (evaluations and ICL examples)."""
    queries = {_normalized(e.query) for e in artifact.evaluations if e.query.strip()}
    return queries | {_normalized(e.query) for e in artifact.icl_examples}


def check_held_out(queries: Sequence[dict[str, str]], artifact: AlignmentArtifact) -> None:
    """Refuse evaluation queries that the artifact was optimised on.

    Raises:
        ConfigError: naming the overlapping queries.
    """
    seen = training_queries(artifact)
    overlap = [q for q in queries if _normalized(q["query"]) in seen]
    if overlap:
        shown = "; ".join(f"{q['id']}: {q['query'][:60]!r}" for q in overlap[:5])
        raise ConfigError(
            f"{len(overlap)} evaluation quer{'y was' if len(overlap) == 1 else 'ies were'} used to optimise "
            f"the artifact (training or ICL queries), so the evaluation would not be held out: {shown}. "
            "Use different queries, or pass allow_overlap=True to evaluate anyway."
        )
