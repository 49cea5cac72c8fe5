"""The benchmarks' Markdown table: one row per measurement, against its target."""

from __future__ import annotations


def to_markdown(rows: list[tuple[str, str, str, str]]) -> str:
    """``| benchmark | measured | target | verdict |`` rows."""
    lines = ["| benchmark | measured | target | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)
