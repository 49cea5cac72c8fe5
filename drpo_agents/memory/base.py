"""What a critique memory stores and the protocol every memory implements."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from drpo_agents.errors import ConfigError

MEMORY_EMBEDDINGS = "hashing"
"""The default embeddings of a critique memory. Lexical: a level stores dozens of critiques,
embedded beside the next level's model calls, where a neural embedder would cost ~4 ms each;
and a shared memory's vectors must keep one space across the runs that fill it. A memory built
with ``embeddings=`` uses those instead (and should keep them)."""


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

    @property
    def record_id(self) -> str:
        """The stored record's id: identical verdicts within a run (same query, aspect and
        rationale, e.g. for sibling prompts) are one record, so rewriting a batch changes nothing."""
        return digest(self.run_id, self.query_id, self.aspect, self.rationale)

    @property
    def content_key(self) -> str:
        """What ties in recall are broken by: the verdict and where in the search it was given,
        never the run id, so the same seed recalls the same lessons in any run, folder or hour."""
        return digest(
            self.query, self.aspect, str(self.score), self.rationale, str(self.level), self.candidate_id
        )

    @property
    def document(self) -> str:
        """The text a critique is embedded (and found) by."""
        return f"{self.query}\n{self.aspect}: {self.rationale}"


@dataclass(frozen=True)
class Lesson:
    """What the rewriter is shown from memory: a specific past critique or a general rule."""

    text: str
    query: str  # the query a specific critique quotes ("" for a general rule)
    runs: tuple[str, ...]  # the run(s) it was learned in


def digest(*parts: str) -> str:
    """A short stable hash of ``parts`` (record ids, collection names)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


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
        horizon: tuple[str, int] | None = None,
    ) -> list[Critique]:
        """Up to ``k`` distinct (aspect, rationale) critiques scored ``<= max_score``, nearest to
        ``text`` first, ties by content (:attr:`Critique.content_key`), not by run id.
        ``horizon=(run_id, level)``: that run's own records only from levels below ``level``
        (what its checkpoint had committed when the level began)."""
        ...


@runtime_checkable
class RunLedger(CritiqueMemory, Protocol):
    """A critique memory that knows which runs have finished, and who started them, so a run can
    see exactly its owner's runs that had finished when it began: what runs going on beside it
    store stays out of its recall (and of its outcome), however their steps interleave, and one
    server user's queries never reach another user's rewrites. Both built-in memories are ledgers.
    """

    def recall(
        self,
        text: str,
        *,
        k: int,
        responder_model: str | None = None,
        run_id: str | None = None,
        max_score: int = 3,
        horizon: tuple[str, int] | None = None,
        runs: Collection[str] | None = None,
    ) -> list[Critique]:
        """As :meth:`CritiqueMemory.recall`; ``runs``: only records of these runs, besides the
        horizon run's own."""
        ...

    def finished_runs(self, owner: str = "") -> frozenset[str]:
        """The finished runs of ``owner`` (the LangGraph Server user who started them; "" for
        runs started without one, from the CLI or Python): a user's runs never see another's."""
        ...

    def finish_run(self, run_id: str, owner: str = "") -> None:
        """Record that ``run_id`` (started by ``owner``) finished; idempotent."""
        ...


@runtime_checkable
class ListableCritiqueMemory(CritiqueMemory, Protocol):
    """A critique memory that can also list one responder model's low-scoring critiques, which
    general lessons are distilled from (:mod:`drpo_agents.memory.distill`); both built-in
    memories can."""

    def critiques_of(self, responder_model: str) -> list[Critique]: ...


# The keywords the search passes to ``CritiqueMemory.recall``.
_RECALL_KEYWORDS = ("k", "responder_model", "run_id", "horizon")


def check_critique_memory(memory: object) -> None:
    """Refuse, with one clear message, a custom memory that does not implement
    :class:`CritiqueMemory` as the search calls it (a ``recall`` written before ``horizon``
    existed would otherwise fail mid-run with a bare ``TypeError``)."""
    if not isinstance(memory, CritiqueMemory):
        raise ConfigError(
            f"memory must implement CritiqueMemory (remember(critiques) and recall(text, *, k, ...)), "
            f"got {type(memory).__name__}"
        )
    parameters = inspect.signature(memory.recall).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    keywords = (*_RECALL_KEYWORDS, "runs") if isinstance(memory, RunLedger) else _RECALL_KEYWORDS
    missing = [name for name in keywords if name not in parameters]
    if missing:
        raise ConfigError(
            f"{type(memory).__name__}.recall does not accept {', '.join(missing)}: the search calls "
            f"recall(text, {', '.join(f'{name}=...' for name in keywords)}); "
            "see drpo_agents.memory.CritiqueMemory"
        )
