"""JSON files: atomic writes, and reads whose every failure is one clear error naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from drpo_agents.errors import ConfigError, DRPOError, raise_item_faults


def save_json_atomically(model: BaseModel, path: str | Path) -> Path:
    """Write ``model`` as indented UTF-8 JSON via a temporary file, so a crash never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    try:
        tmp.write_text(model.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(target)
    except OSError:
        tmp.unlink(missing_ok=True)  # e.g. a disk that filled up: leave no half-written file behind
        raise
    return target


def read_text(path: str | Path, what: str, error: type[DRPOError]) -> str:
    """The UTF-8 text of ``path``; a missing, unreadable or non-UTF-8 file raises ``error`` with
    one line naming ``what`` (e.g. ``"query file"``) and the path."""
    source = Path(path)
    try:
        return source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{what} not found: {source}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text: {source} (byte {exc.start})") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {source}: {exc.strerror or exc}") from exc


def read_json(path: str | Path, what: str, error: type[DRPOError]) -> Any:
    """The JSON value in ``path``; a missing, unreadable or non-JSON file raises ``error`` with one
    line naming ``what`` (e.g. ``"artifact file"``) and the path."""
    source = Path(path)
    text = read_text(source, what, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{what} is not valid JSON: {source}: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc


def read_jsonl(text: str, source: str) -> list[Any]:
    """The values of a JSON Lines text (blank lines skipped).

    Raises:
        ConfigError: naming every line that is not JSON, a line each.
    """
    rows: list[Any] = []
    faults: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                faults.append(f"{source}:{number}: not valid JSON: {exc.msg}")
    try:
        raise_item_faults(faults, len(rows) + len(faults), "lines")
    except ConfigError as exc:
        raise ConfigError(str(exc) if len(faults) == 1 else f"{source}: {exc}") from None
    return rows
