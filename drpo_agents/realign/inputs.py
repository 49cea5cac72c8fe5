"""A round's new queries: read from a file or a folder that grows, each used once, split into the
queries it optimizes on and the held-out ones it is gated on."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from drpo_agents.datasets import load_queries
from drpo_agents.errors import ConfigError
from drpo_agents.search.records import Query

QUERY_SUFFIXES = (".jsonl", ".json", ".txt")


def checked_input(state: Mapping[str, object]) -> tuple[str, str]:
    """(deployment folder, query source) of a round's input, each a path.

    Raises:
        ConfigError: naming what is missing or not a path.
    """
    paths: list[str] = []
    for key, what in (("deploy_dir", "the deployment folder"), ("queries", "a query file or folder")):
        value = state.get(key)
        if not isinstance(value, str | Path) or not str(value).strip():
            got = "nothing" if value is None else type(value).__name__
            raise ConfigError(f"a realign round needs {key!r}: the path of {what} (got {got})")
        paths.append(str(value))
    return paths[0], paths[1]


def query_key(text: str) -> str:
    """A query's identity across files and rounds: the hash of its whitespace- and case-normalized text."""
    normalized = " ".join(text.split()).casefold()
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:16]


def query_files(source: str | Path) -> list[Path]:
    """The query files ``source`` names: itself, or every query file in the folder, by name.

    Raises:
        ConfigError: ``source`` does not exist.
    """
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in QUERY_SUFFIXES)
    raise ConfigError(f"no queries at {path}: give a query file (.jsonl, .json, .txt) or a folder of them")


def new_queries(source: str | Path, used: set[str]) -> tuple[list[Query], list[str]]:
    """The queries in ``source`` no earlier round used (by :func:`query_key`), in file order, and the
    files they came from. Queries read from a folder get their file's name in their id.

    Raises:
        ConfigError: a missing source or an invalid query file (one line naming it).
    """
    files = query_files(source)
    fresh: list[Query] = []
    seen = set(used)
    sources: list[str] = []
    for path in files:
        added = 0
        for query in load_queries(path):
            key = query_key(query["query"])
            if key in seen:
                continue
            seen.add(key)
            prefix = f"{path.stem}/" if len(files) > 1 or Path(source).is_dir() else ""
            fresh.append({**query, "id": prefix + query["id"]})
            added += 1
        if added:
            sources.append(str(path))
    return fresh, sources


def split_held_out(queries: Sequence[Query], fraction: float, seed: int) -> tuple[list[Query], list[Query]]:
    """``(train, held_out)``: a ``fraction`` of the queries is held out (at least one on each side
    when there are two or more), chosen by a seeded hash of each query's text, so the same queries
    split the same way whatever their order, the run or the clock."""
    ranked = sorted(
        queries, key=lambda q: hashlib.sha256(f"{seed}:{query_key(q['query'])}".encode()).hexdigest()
    )
    count = min(max(1, math.ceil(fraction * len(ranked))), len(ranked) - 1) if len(ranked) >= 2 else 0
    held = {id(q) for q in ranked[:count]}
    return [q for q in queries if id(q) not in held], [q for q in queries if id(q) in held]
