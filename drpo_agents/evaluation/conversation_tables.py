"""The Markdown of conversations in an evaluation: single-turn and multi-turn queries apart, and
the mean reply score at each turn of the conversations answered turn by turn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class _Estimate(Protocol):
    def format(self, digits: int = 2) -> str: ...


class _Record(Protocol):  # records.QueryRecord
    @property
    def kind(self) -> str: ...


class _Setup(Protocol):  # records.SetupResult
    @property
    def name(self) -> str: ...
    @property
    def by_kind(self) -> Mapping[str, _Estimate]: ...
    @property
    def per_turn(self) -> Sequence[_Estimate]: ...


def conversation_tables(records: Sequence[_Record], setups: Sequence[_Setup]) -> list[str]:
    """Single-turn and multi-turn means apart, and the mean per turn, when there are conversations."""
    if not any(r.kind == "multi-turn" for r in records):
        return []
    kinds = [k for k in ("single-turn", "multi-turn") if any(r.kind == k for r in records)]
    counts = {k: sum(r.kind == k for r in records) for k in kinds}
    lines = ["", "### Single-turn and multi-turn queries apart (overall mean)", ""]
    lines += [
        "| setup | " + " | ".join(f"{k} ({counts[k]})" for k in kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for result in setups:
        cells = [result.by_kind[k].format() if k in result.by_kind else "n/a" for k in kinds]
        lines.append(f"| {result.name} | " + " | ".join(cells) + " |")
    turns = max((len(r.per_turn) for r in setups), default=0)
    if turns:
        lines += ["", "### Conversations answered turn by turn: mean reply score per turn", ""]
        lines += [
            "| setup | " + " | ".join(f"turn {n + 1}" for n in range(turns)) + " |",
            "|---" * (turns + 1) + "|",
        ]
        for result in setups:
            cells = [result.per_turn[n].format() if n < len(result.per_turn) else "n/a" for n in range(turns)]
            lines.append(f"| {result.name} | " + " | ".join(cells) + " |")
    return lines
