"""What a critique memory stores and the protocol every memory implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Critique:
    """One aspect's verdict on one answer, as remembered across levels and runs."""

    query: str
    aspect: str
    score: int
    rationale: str
    run_id: str
    responder_model: str
    candidate_id: str
    level: int
    query_id: str

    def as_lesson(self) -> str:
        """How the rewriter is shown a past critique."""
        snippet = " ".join(self.query.split())[:90]
        return f'[{self.aspect} {self.score}/5] on a similar query ("{snippet}"): {self.rationale}'


@runtime_checkable
class CritiqueMemory(Protocol):
    """Anything that stores judged answers' critiques and retrieves the most relevant ones."""

    def remember(self, critiques: Sequence[Critique]) -> None: ...

    def recall(
        self,
        text: str,
        *,
        k: int,
        responder_model: str | None = None,
        run_id: str | None = None,
        max_score: int = 3,
    ) -> list[Critique]: ...
