"""Reading a ``trace.jsonl`` file back (shared texts restored, the run tree) and repairing a torn last line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from drpo_agents.errors import DRPOError
from drpo_agents.json_types import JsonObject
from drpo_agents.tracing.values import resolve_texts


def repair_trace(path: str | Path) -> int:
    """Cut off a torn last line (one without its newline, left by a killed process) so that
    appended lines start on a line of their own; returns the bytes removed (0: nothing torn)."""
    trace = Path(path)
    if not trace.exists():
        return 0
    with trace.open("rb+") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return 0
        # Scan back for the last newline, a block at a time (a torn line can be long).
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - 65536)
            file.seek(start)
            block = file.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        file.truncate(keep)
        return size - keep


def read_trace(path: str | Path) -> list[JsonObject]:
    """The records of a :class:`JsonlTracer` file, in the order the runs finished, with the
    texts written once and referenced after (``{"$text": ID}``) restored in every record.

    A torn last line (the writer was killed mid-line) is skipped.

    Raises:
        DRPOError: a line other than a torn last one is not JSON.
    """
    trace = Path(path)
    text = trace.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # torn by a kill (or empty): not a record
    records: list[JsonObject] = []
    texts: dict[str, str] = {}  # shared texts defined so far, by id
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DRPOError(f"{trace}: line {number} is not a trace record ({exc.msg})") from exc
        for part in ("inputs", "outputs"):
            if part in record:
                record[part] = resolve_texts(record[part], texts)
        records.append(record)
    return records


def iter_tree(records: list[JsonObject]) -> Iterator[tuple[int, JsonObject]]:
    """``(depth, record)`` for every record, parents before children, siblings by start time."""
    children: dict[str | None, list[JsonObject]] = {}
    ids = {r["id"] for r in records}
    for record in records:
        parent = record["parent_id"] if record["parent_id"] in ids else None
        children.setdefault(parent, []).append(record)

    def walk(parent: str | None, depth: int) -> Iterator[tuple[int, JsonObject]]:
        for record in sorted(children.get(parent, []), key=lambda r: r["dotted_order"] or r["start_time"]):
            yield depth, record
            yield from walk(record["id"], depth + 1)

    yield from walk(None, 0)
