"""Model calls as data, so every agent step runs unchanged under ``invoke`` and ``ainvoke``.

Agent logic is written once, as a generator that *yields* :class:`ModelCall` objects and
receives each call's result (or its exception, thrown back in). :func:`run_plan` drives such a
plan with blocking calls, :func:`arun_plan` with awaited ones; nothing else differs. This is
how the graph's nodes support both sync and async execution without two copies of each node
and without sharing async HTTP clients across event loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import merge_configs

T = TypeVar("T")


@dataclass
class ModelCall:
    """One call to make: ``runnable.invoke(input, config, **kwargs)`` (or ``ainvoke``)."""

    runnable: Runnable[Any, Any]
    input: Any
    config: RunnableConfig | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


CallPlan = Generator[ModelCall, Any, T]


def run_plan(plan: CallPlan[T]) -> T:
    """Run ``plan`` with blocking model calls and return its result."""
    try:
        call = next(plan)
        while True:
            try:
                result = call.runnable.invoke(call.input, call.config, **call.kwargs)
            except Exception as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def arun_plan(plan: CallPlan[T]) -> T:
    """Run ``plan`` with awaited model calls and return its result."""
    try:
        call = next(plan)
        while True:
            try:
                result = await call.runnable.ainvoke(call.input, call.config, **call.kwargs)
            except Exception as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def call_config(config: RunnableConfig | None, role: str, step: str, **metadata: Any) -> RunnableConfig:
    """``config`` plus a run name, role tags and DRPO metadata, so a trace reads as the search it is."""
    return merge_configs(
        config,
        {
            "run_name": f"drpo_{step}",
            "tags": ["drpo", f"drpo:{role}"],
            "metadata": {"drpo_role": role, "drpo_step": step, **metadata},
        },
    )


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even where an event loop is already running
    (Jupyter): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="drpo-sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()
