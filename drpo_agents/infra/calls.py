"""Model calls as data, so every agent step runs unchanged under ``invoke`` and ``ainvoke``.

Agent logic is written once, as a generator that *yields* :class:`ModelCall` objects and
receives each call's result (or its exception, thrown back in). :func:`run_plan` drives such a
plan with blocking calls, :func:`arun_plan` with awaited ones; nothing else differs. This is
how the graph's nodes support both sync and async execution without two copies of each node
and without sharing async HTTP clients across event loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import merge_configs

from drpo_agents.errors import DRPOError
from drpo_agents.infra.call_identity import PlanPosition, calling, task_scope

T = TypeVar("T")
P = ParamSpec("P")
Task = TypeVar("Task")  # a node's input: its Send payload


@dataclass
class ModelCall:
    """One call to make: ``runnable.invoke(input, config, **kwargs)`` (or ``ainvoke``)."""

    runnable: Runnable[Any, Any]
    input: Any
    config: RunnableConfig | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParallelPlans:
    """Sub-plans that do not depend on each other (e.g. the jurors of a jury).

    Awaited concurrently under ``ainvoke``, run one after another under ``invoke``. The plan
    that yields this receives a list with each sub-plan's result, or the exception it raised,
    in order, and decides what a failure means.
    """

    plans: list[Generator[Any, Any, Any]]


CallPlan = Generator[ModelCall | ParallelPlans, Any, T]


def _as_call_error(exc: Exception) -> Exception:
    """What a failed model call throws into its plan: our own errors and LangGraph's control-flow
    signals (interrupts) as they are; anything else wrapped as a recoverable ModelCallError."""
    from langgraph.errors import GraphBubbleUp

    from drpo_agents.errors import DRPOError, ModelCallError, recoverable_errors

    if isinstance(exc, (DRPOError, GraphBubbleUp, *recoverable_errors())):
        return exc
    error = ModelCallError(f"{type(exc).__name__} from the model call: {exc}")
    error.__cause__ = exc
    return error


class RoleLimiter:
    """Caps the model calls in flight per role (``drpo_role`` in the call's metadata).

    ``max_concurrency`` bounds whole graph tasks; this bounds calls to one provider, e.g. a
    rate-limited judge API beside a local responder. Works for sync calls (threads) and async
    calls (one semaphore set per event loop).
    """

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits = dict(limits)
        self._thread_slots = {role: threading.BoundedSemaphore(n) for role, n in self.limits.items()}
        self._loop_slots: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()

    @staticmethod
    def role_of(call: ModelCall) -> str | None:
        metadata = (call.config or {}).get("metadata") or {}
        role = metadata.get("drpo_role")
        return role if isinstance(role, str) else None

    @contextmanager
    def slot(self, call: ModelCall) -> Iterator[None]:
        semaphore = self._thread_slots.get(self.role_of(call) or "")
        if semaphore is None:
            yield
            return
        with semaphore:
            yield

    @asynccontextmanager
    async def aslot(self, call: ModelCall) -> AsyncIterator[None]:
        role = self.role_of(call)
        if role not in self.limits:
            yield
            return
        loop = asyncio.get_running_loop()
        slots = self._loop_slots.setdefault(loop, {})
        semaphore = slots.setdefault(role, asyncio.Semaphore(self.limits[role]))
        async with semaphore:
            yield


def _settled(
    plans: list[Generator[Any, Any, Any]],
    limiter: RoleLimiter | None,
    position: PlanPosition | None,
    ordinal: int,
) -> list[Any]:
    results: list[Any] = []
    for index, sub in enumerate(plans):
        try:
            results.append(_run_plan(sub, limiter, position.sub_plan(ordinal, index) if position else None))
        except Exception as exc:
            results.append(exc)
    return results


def run_plan(plan: CallPlan[T], limiter: RoleLimiter | None = None, scope: str | None = None) -> T:
    """Run ``plan`` with blocking model calls and return its result.

    ``scope`` (see :func:`~drpo_agents.infra.call_identity.task_scope`) names the task the plan runs
    for, so each call gets a stable identity (what the response journal keys on); without it the
    calls have none.
    """
    return _run_plan(plan, limiter, PlanPosition(scope) if scope is not None else None)


def _run_plan(plan: CallPlan[T], limiter: RoleLimiter | None, position: PlanPosition | None) -> T:
    ordinal = 0
    try:
        call = next(plan)
        while True:
            if isinstance(call, ParallelPlans):
                settled = _settled(call.plans, limiter, position, ordinal)
                ordinal += 1
                call = plan.send(settled)
                continue
            identity = position.call(ordinal) if position else None
            ordinal += 1
            try:
                with limiter.slot(call) if limiter else nullcontext(), calling(identity):
                    result = call.runnable.invoke(call.input, call.config, **call.kwargs)
            except Exception as exc:
                call = plan.throw(_as_call_error(exc))
            else:
                call = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def arun_plan(plan: CallPlan[T], limiter: RoleLimiter | None = None, scope: str | None = None) -> T:
    """Run ``plan`` with awaited model calls and return its result (``scope`` as in :func:`run_plan`)."""
    return await _arun_plan(plan, limiter, PlanPosition(scope) if scope is not None else None)


async def _arun_plan(plan: CallPlan[T], limiter: RoleLimiter | None, position: PlanPosition | None) -> T:
    ordinal = 0
    try:
        call = next(plan)
        while True:
            if isinstance(call, ParallelPlans):
                settled = await asyncio.gather(
                    *(
                        _arun_plan(sub, limiter, position.sub_plan(ordinal, index) if position else None)
                        for index, sub in enumerate(call.plans)
                    ),
                    return_exceptions=True,
                )
                for outcome in settled:
                    if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                        raise outcome  # cancellation and the like are not a sub-plan's result
                ordinal += 1
                call = plan.send(list(settled))
                continue
            identity = position.call(ordinal) if position else None
            ordinal += 1
            try:
                async with limiter.aslot(call) if limiter else nullcontext():
                    with calling(identity):
                        result = await call.runnable.ainvoke(call.input, call.config, **call.kwargs)
            except Exception as exc:
                call = plan.throw(_as_call_error(exc))
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


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="drpo-event-loop", daemon=True).start()
        return _loop


def on_own_loop() -> bool:
    """Whether the running event loop is :func:`run_sync`'s own (the CLI's and the blocking API's),
    which runs nothing but drpo's work: a short blocking call there delays only our own calls,
    while on anyone else's loop (an app's, LangGraph Server's) it holds up their work too."""
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


SIGNAL_CHECK_SECONDS = 0.2  # how often a blocked run_sync wakes to let a pending Ctrl-C through


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, on one long-lived background event loop.

    One loop for the whole process matters: provider clients (langchain-openai's among them)
    cache async HTTP connections per process, and connections opened on a loop that has since
    closed make every later call fail. It also works where a loop is already running (Jupyter).
    """
    future = asyncio.run_coroutine_threadsafe(coroutine, _background_loop())
    try:
        while not future.done():
            # Timed waits, not one without end: Ctrl-C's signal may land on a worker thread, and
            # the main thread only runs Python's handler (raising KeyboardInterrupt) when it wakes.
            concurrent.futures.wait([future], timeout=SIGNAL_CHECK_SECONDS)
        return future.result()
    except KeyboardInterrupt:
        future.cancel()  # stop the run (it stays resumable from its last checkpoint)
        raise
    except Exception as exc:
        if type(exc).__name__ == "BlockingError":  # `langgraph dev`'s check flags every thread with a loop
            raise DRPOError(
                "langgraph dev's blocking-call check stopped drpo's own event loop (a sync node's "
                "search runs there, in a thread of its own): start the server with --allow-blocking"
            ) from exc
        raise


def blocking_twin(
    coroutine_function: Callable[P, Coroutine[Any, Any, T]], name: str, doc: str
) -> Callable[P, T]:
    """The blocking twin of ``coroutine_function``, run by :func:`run_sync`: made by this one wrapper,
    its parameters are the coroutine function's by construction (type checkers, IDEs and
    ``inspect.signature`` see them), not a copy that could drift."""

    @functools.wraps(coroutine_function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(coroutine_function(*args, **kwargs))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    return call


def plan_node(
    name: str,
    plan: Callable[[Task, RunnableConfig], CallPlan[T]],
    limiter: RoleLimiter | None = None,
) -> RunnableLambda[Any, Any]:
    """A LangGraph node running ``plan`` under both ``invoke`` (blocking) and ``ainvoke`` (awaited)."""

    # The task's payload names its calls, so a task re-run after a crash replays its journalled
    # responses (drpo_agents.infra.journal).
    def run(task: Task, config: RunnableConfig) -> T:
        return run_plan(plan(task, config), limiter, task_scope(name, task))

    async def arun(task: Task, config: RunnableConfig) -> T:
        return await arun_plan(plan(task, config), limiter, task_scope(name, task))

    return RunnableLambda(run, afunc=arun, name=name)
