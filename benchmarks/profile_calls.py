"""Where the framework's CPU goes per model call: a cProfile of one run, grouped by component.

Each profiled function's own time (``tottime``) goes to the component its module belongs to;
the own time of functions that belong to no component (builtins such as ``sqlite3`` execute,
the standard library) goes to whoever called them, in proportion to each caller's share of the
calls' time, so the components add up to the profiled thread's time. Only the main thread is
profiled; other threads (aiosqlite's, which runs the checkpointer's SQL, Chroma's Rust pool, and
the executor running the graph's sync nodes) are measured as the process CPU it did not use.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

SANDBOX_COMPONENT = "sandbox models + latency wrapper (not framework)"
# (component, module prefixes); the first match wins, so specific prefixes come first.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    (SANDBOX_COMPONENT, ("drpo_agents.models.sandbox", "benchmarks.")),
    (
        "checkpointer (langgraph.checkpoint, aiosqlite)",
        ("langgraph.checkpoint", "aiosqlite", "drpo_agents.infra.checkpoints"),
    ),
    ("graph scheduling (langgraph pregel, channels)", ("langgraph",)),
    (
        "journal + memo cache",
        (
            "drpo_agents.infra.journal",
            "drpo_agents.infra.cache",
            "drpo_agents.infra.call_identity",
            "langchain_core.caches",
        ),
    ),
    (
        "Chroma writes + recall, ICL retrieval",
        ("chromadb", "drpo_agents.memory", "drpo_agents.vectors", "drpo_agents.retrieval", "numpy"),
    ),
    (
        "structured output + pydantic",
        (
            "drpo_agents.structured",
            "drpo_agents.schemas",
            "pydantic",
            "langchain_core.output_parsers",
            "langchain_core.utils.function_calling",
            "langchain_core.utils.json",
        ),
    ),
    (
        "callbacks + tracing",
        (
            "langchain_core.callbacks",
            "langchain_core.tracers",
            "drpo_agents.tracing",
            "drpo_agents.tracing.values",
            "langsmith",
        ),
    ),
    ("langchain_core (runnables, chat model, messages)", ("langchain_core",)),
    ("our node code (drpo_agents)", ("drpo_agents",)),
    ("asyncio event loop", ("asyncio",)),
]
OTHER = "other"


def _module_of(filename: str) -> str | None:
    """Dotted module path of a profiled function's file, or None for builtins and unknown files."""
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/drpo_agents/", "/benchmarks/", "/python3.11/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            if marker in ("/drpo_agents/", "/benchmarks/"):
                tail = marker.strip("/") + "/" + tail
            return tail.removesuffix(".py").replace("/", ".")
    return None


def component_of(filename: str) -> str | None:
    """The component a function's file belongs to (None: its time goes to its callers)."""
    module = _module_of(filename)
    if module is None:
        return None
    for name, prefixes in COMPONENTS:
        if any(module == p.rstrip(".") or module.startswith(p.rstrip(".") + ".") for p in prefixes):
            return name
    return None


def component_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Own time of every profiled function, summed by component (unowned time follows callers)."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    shares: dict[Any, dict[str, float]] = {}

    def share(key: Any, seen: frozenset[Any]) -> dict[str, float]:
        if key in shares:
            return shares[key]
        owner = component_of(key[0])
        if owner is not None:
            result = {owner: 1.0}
        else:
            callers = table[key][4] if key in table else {}
            weights = {c: v[3] for c, v in callers.items() if c not in seen and c in table}
            total = sum(weights.values())
            result = defaultdict(float)
            if total <= 0:
                result[OTHER] = 1.0
            else:
                for caller, weight in weights.items():
                    for name, part in share(caller, seen | {key}).items():
                        result[name] += part * weight / total
            result = dict(result)
        shares[key] = result  # within a cycle this is approximate; cycles through builtins are rare
        return result

    seconds: dict[str, float] = defaultdict(float)
    for key, (_, _, tottime, _, _) in table.items():
        for name, part in share(key, frozenset()).items():
            seconds[name] += tottime * part
    return dict(seconds)


IDLE = "<method 'poll' of 'select.epoll' objects>"  # the event loop waiting: not CPU


async def profiled(run: Callable[[], Awaitable[T]]) -> tuple[T, dict[str, float]]:
    """Run ``run()`` under cProfile; its result and each component's share of the main thread's
    busy time (the event loop's idle waits left out). The profiler's own cost inflates functions
    called often, so shares, not its seconds, are what a caller should scale."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = await run()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for key in [k for k in table if k[2] == IDLE]:
        cc, nc, _, ct, callers = table[key]
        table[key] = (cc, nc, 0.0, ct, callers)
    seconds = component_seconds(stats)
    total = sum(seconds.values()) or 1.0
    return result, {name: spent / total for name, spent in seconds.items()}


async def cpu_timed(run: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
    """Run ``run()`` unprofiled; its result, the main thread's CPU seconds and the other threads'."""
    process_started, thread_started = time.process_time(), time.thread_time()
    result = await run()
    thread_cpu = time.thread_time() - thread_started
    return result, thread_cpu, max(0.0, time.process_time() - process_started - thread_cpu)
