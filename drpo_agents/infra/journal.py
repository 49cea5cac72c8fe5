"""The per-run response journal: a task re-run after a crash replays its finished model calls instead of paying again.

Every model call made inside a task scope (:mod:`drpo_agents.infra.call_identity`: the node's name and
the hash of its payload, plus the call's ordinal in the task's plan) is stored, keyed on that
identity plus LangChain's cache key (the prompt and the model's "llm string"), and committed
before the call returns. A graph task that finished its call but was not checkpointed before a
``SIGKILL`` runs again on resume, names its calls the same way and gets the stored responses:
no finished call is paid twice, and the run continues exactly as the first attempt would have.

Unlike the memo cache (:mod:`drpo_agents.infra.cache`, what ``config.cache`` selects), the journal
never serves one task's answer to another task, so it is on for every role without changing
what a fresh run samples. :meth:`ResponseJournal.around` puts it in front of a model's memo
cache: each model has exactly one LangChain cache, journal first, then memo. Outside any task
scope the journal is inert and the memo cache alone answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.globals import get_llm_cache

from drpo_agents.infra.cache import SQLiteLLMCache, decode_generations, encode_generations, open_store
from drpo_agents.infra.call_identity import CallIdentity, current_call
from drpo_agents.infra.calls import on_own_loop


def _key(identity: CallIdentity, prompt: str, llm_string: str) -> str:
    text = json.dumps([identity.scope, identity.path, prompt, llm_string])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseJournal:
    """Responses of identified model calls in one SQLite file; safe to share between threads and processes.

    ``stored`` and ``replayed`` count this process's writes and hits.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection = open_store(
            self.path,
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, scope TEXT, path TEXT, value TEXT)",
        )
        self.stored = 0
        self.replayed = 0

    def replay(self, identity: CallIdentity, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The stored response of this call, or None if it never finished."""
        with self._lock:
            row = self._connection.execute(
                "SELECT value FROM responses WHERE key = ?", (_key(identity, prompt, llm_string),)
            ).fetchone()
            if row is not None:
                self.replayed += 1
        return decode_generations(row[0]) if row is not None else None

    def record(self, identity: CallIdentity, prompt: str, llm_string: str, response: RETURN_VAL_TYPE) -> str:
        """Store (and commit) the response of a finished call; returns its encoding
        (:func:`~drpo_agents.infra.cache.encode_generations`), for a memo cache to reuse."""
        value = encode_generations(response)
        with self._lock, self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO responses (key, scope, path, value) VALUES (?, ?, ?, ?)",
                (_key(identity, prompt, llm_string), identity.scope, identity.path, value),
            )
            self.stored += 1
        return value

    def around(self, memo: BaseCache | None) -> JournaledCache:
        """A LangChain cache answering from this journal first, then from ``memo``."""
        return JournaledCache(self, memo)

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class JournaledCache(BaseCache):
    """One model's LangChain cache: the run's journal (inside a task scope), then its memo cache."""

    def __init__(self, journal: ResponseJournal, memo: BaseCache | None) -> None:
        self.journal = journal
        self.memo = memo

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        identity = current_call()
        if identity is not None:
            replayed = self.journal.replay(identity, prompt, llm_string)
            if replayed is not None:
                return replayed
        return self.memo.lookup(prompt, llm_string) if self.memo is not None else None

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        identity = current_call()
        encoded = (
            self.journal.record(identity, prompt, llm_string, return_val) if identity is not None else None
        )
        if isinstance(self.memo, SQLiteLLMCache) and encoded is not None:
            self.memo.store_encoded(prompt, llm_string, encoded)  # the same text: encoded once
        elif self.memo is not None:
            self.memo.update(prompt, llm_string, return_val)

    # On drpo's own loop a local SQLite read or commit runs inline: a thread hop costs several
    # times the SQL's CPU (about 70-100 µs against 12). On anyone else's loop (an app's, a
    # server's) it goes to the journal's thread, so a commit's disk sync never holds up their work.
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        if on_own_loop():
            return self.lookup(prompt, llm_string)
        return await _in_journal_thread(self.lookup, prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        if on_own_loop():
            self.update(prompt, llm_string, return_val)
        else:
            await _in_journal_thread(self.update, prompt, llm_string, return_val)

    def clear(self, **kwargs: Any) -> None:
        """Clear the memo cache; the journal is the run's record and is kept."""
        if self.memo is not None:
            self.memo.clear(**kwargs)


T = TypeVar("T")


@functools.cache
def _journal_thread() -> concurrent.futures.ThreadPoolExecutor:
    # One thread: the journal's SQL is serialized by its lock anyway, and a thread that stays warm
    # hands work over faster than the shared default pool.
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="drpo-journal")


async def _in_journal_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in the journal's thread, in this task's context (the call identity)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_journal_thread(), context.run, function, *args)


def _memo_of(model: Any) -> BaseCache | None:
    """The cache ``model`` would use on its own (its own, else the global one unless it opted out)."""
    cache = model.cache
    if isinstance(cache, JournaledCache):
        return cache.memo
    if isinstance(cache, BaseCache):
        return cache
    return get_llm_cache() if cache is not False else None


def journaled_copies(models: Sequence[Any], journal: ResponseJournal) -> list[Any]:
    """Copies of ``models`` whose cache is ``journal`` in front of their memo cache (models
    without a cache field pass through)."""
    return [
        m.model_copy(update={"cache": journal.around(_memo_of(m))}) if hasattr(m, "cache") else m
        for m in models
    ]
