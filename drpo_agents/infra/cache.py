"""A persistent LLM response cache, so re-runs and resumed runs never pay twice for the same call.

It implements LangChain's ``BaseCache``: the key is the serialized messages plus the model's
"llm string" (its class, model name and every call parameter, bound tools and stop sequences
included), so only truly identical calls are served from it. Entries are committed before the
call returns, which is what makes a resume after ``SIGKILL`` free of repeated calls.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core._api import LangChainBetaWarning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps, loads
from langchain_core.outputs import Generation


def _key(prompt: str, llm_string: str) -> str:
    return hashlib.sha256(json.dumps([prompt, llm_string]).encode("utf-8")).hexdigest()


def open_store(path: Path, create_table: str) -> sqlite3.Connection:
    """A SQLite connection in WAL mode (synchronous=NORMAL), shareable between threads (callers hold their own lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, timeout=30)
    with connection:
        connection.execute("PRAGMA journal_mode=WAL")
        # In WAL mode a commit survives the process being killed without waiting for the disk
        # (only a power cut can lose the last commits); an fsync per call costs milliseconds.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(create_table)
    return connection


def encode_generations(return_val: RETURN_VAL_TYPE) -> str:
    """The text a cache stores for a call's generations."""
    return json.dumps([dumps(generation) for generation in return_val])


def decode_generations(text: str) -> list[Generation]:
    """The generations back from :func:`encode_generations`' text."""
    # Only LangChain core objects (generations, messages) may be revived from a cache file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LangChainBetaWarning)  # loads() is stable in practice
        return [loads(item, allowed_objects="core") for item in json.loads(text)]


class SQLiteLLMCache(BaseCache):
    """LangChain cache in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection = open_store(
            self.path,
            "CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, llm_string TEXT, value TEXT)",
        )
        self.hits = 0
        self.misses = 0

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT value FROM llm_cache WHERE key = ?", (_key(prompt, llm_string),)
            ).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return decode_generations(row[0])

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.store_encoded(prompt, llm_string, encode_generations(return_val))

    def store_encoded(self, prompt: str, llm_string: str, value: str) -> None:
        """:meth:`update` with the generations already encoded (:func:`encode_generations`)."""
        with self._lock, self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO llm_cache (key, llm_string, value) VALUES (?, ?, ?)",
                (_key(prompt, llm_string), llm_string, value),
            )

    def clear(self, **kwargs: Any) -> None:
        with self._lock, self._connection:
            self._connection.execute("DELETE FROM llm_cache")

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def cached_copies(models: Sequence[Any], cache: BaseCache) -> list[Any]:
    """Copies of chat models that read and write ``cache`` (models without a cache field pass through)."""
    return [m.model_copy(update={"cache": cache}) if hasattr(m, "cache") else m for m in models]
