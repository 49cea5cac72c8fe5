"""Crash moments: a sandbox run instrumented at every point where a crash could matter, killed at one.

A *moment* is an instrumented point of a run, counted in the order the process reaches it:
a model call's start and end (the response exists, nothing has stored it yet) and its return to
the plan that asked for it (whatever stores responses has done so: the promise is "committed
before the call returns"), the SQLite saver's first setup (its file exists, its tables do not
yet), each checkpoint write (``aput`` / ``aput_writes``, before and after), each Chroma write
(critiques, lessons, ICL examples; before and after), the review interrupt, finalize, the run
files (``config.json`` written, ``artifact.json`` / ``report.html`` before and after their
rename) and every trace line. With ``kill_at = N`` the process SIGKILLs itself at moment N (with
``kill_at = "KIND"``, at the first moment whose label starts with KIND): no cleanup, no flush,
as a crash. Per process the logs are ``generated`` (a call reached the model), ``finished`` (its
response was returned to the plan) and ``moments`` (``N label``).

:func:`install` patches the moments in; :mod:`tests.crash_zygote` runs the processes.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import signal
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

from chromadb.api.models.Collection import Collection
from langchain_core.messages import BaseMessage

from drpo_agents import runner
from drpo_agents.infra import calls
from drpo_agents.infra.run_files import ARTIFACT_FILE, CONFIG_FILE, REPORT_FILE
from drpo_agents.models.sandbox import SandboxJudge, SandboxResponder, SandboxRewriter
from drpo_agents.search import graph as search_graph
from drpo_agents.search import review as search_review
from drpo_agents.tracing import JsonlTracer


class _Process:
    """This process's instrumentation state: where it logs, and the moment it dies at."""

    kill_at: ClassVar[int | str | None] = None
    count: ClassVar[int] = 0
    fds: ClassVar[dict[str, int]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()


def _log(name: str, line: str) -> None:
    # Unbuffered appends: a SIGKILL loses nothing written (the kernel has it), so no fsync is needed.
    if name in _Process.fds:  # not in the zygote, nor in a process that is not instrumented
        os.write(_Process.fds[name], (line + "\n").encode("utf-8"))


def moment(label: str) -> None:
    """Count one moment; at the chosen one, die as a crash would."""
    if not _Process.fds:
        return  # the zygote itself, or a process that is not instrumented
    with _Process.lock:
        _Process.count += 1
        _log("moments", f"{_Process.count} {label}")
        kill_at = _Process.kill_at
        if _Process.count == kill_at or (isinstance(kill_at, str) and label.startswith(kill_at)):
            os.kill(os.getpid(), signal.SIGKILL)


def call_key(role: str, messages: list[BaseMessage]) -> str:
    """A model call's identity: its role and the exact messages it was asked."""
    text = repr([(type(m).__name__, m.content, getattr(m, "tool_calls", None)) for m in messages])
    return hashlib.sha256(f"{role}\x1f{text}".encode()).hexdigest()[:20]


# The keys of the model generations made on behalf of the ModelCall in flight (per task).
_CALL_KEYS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("crash_call_keys", default=None)


def _instrumented(base: type[Any]) -> type[Any]:
    class Instrumented(base):  # type: ignore[misc, valid-type]
        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
            key = call_key(self.role_name, messages)
            _log("generated", key)
            keys = _CALL_KEYS.get()
            if keys is not None:
                keys.append(key)
            moment(f"call-start:{self.role_name}")
            result = super()._generate(messages, stop, run_manager, **kwargs)
            moment(f"call-end:{self.role_name}")
            return result

    Instrumented.__name__ = Instrumented.__qualname__ = f"Crash{base.__name__}"
    return Instrumented


MODEL_CLASSES = {
    "responder": _instrumented(SandboxResponder),
    "judge": _instrumented(SandboxJudge),
    "rewriter": _instrumented(SandboxRewriter),
}

_PROXIES: weakref.WeakSet[Generator[Any, Any, Any]] = weakref.WeakSet()


def _proxied(plan: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    if plan in _PROXIES:
        return plan
    proxy = _proxy(plan)
    _PROXIES.add(proxy)
    return proxy


def _proxy(plan: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Forward a call plan unchanged, noting when each ModelCall's result reaches the plan."""
    outcome: tuple[str, Any] = ("send", None)
    while True:
        try:
            item = plan.send(outcome[1]) if outcome[0] == "send" else plan.throw(outcome[1])
        except StopIteration as stop:
            return stop.value
        keys: list[str] | None = None
        if isinstance(item, calls.ModelCall):
            keys = []
            _CALL_KEYS.set(keys)
        elif isinstance(item, calls.ParallelPlans):
            item = calls.ParallelPlans([_proxied(sub) for sub in item.plans])
        try:
            result = yield item
        except GeneratorExit:
            plan.close()
            raise
        except BaseException as exc:  # thrown in by the driver: hand it on
            outcome = ("throw", exc)
            continue
        if keys is not None:
            for key in keys:
                _log("finished", key)
            moment(f"call-returned:{calls.RoleLimiter.role_of(item)}")
        outcome = ("send", result)


def _moments_around(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        moment(f"{label}:before")
        result = function(*args, **kwargs)
        moment(f"{label}:after")
        return result

    return wrapped


def _instrument_saver(saver: Any) -> None:
    # setup: the SQLite saver creates its tables on first use, after it created the file (it is
    # called before every use; only the first one, which creates them, is a moment).
    for name in ("setup", "aput", "aput_writes"):
        original = getattr(saver, name)

        def make(original: Any = original, name: str = name) -> Any:
            async def wrapped(*args: Any, **kwargs: Any) -> Any:
                if name == "setup" and getattr(saver, "is_setup", True):
                    return await original(*args, **kwargs)
                moment(f"checkpoint-{name}:before")
                result = await original(*args, **kwargs)
                moment(f"checkpoint-{name}:after")
                return result

            return wrapped

        setattr(saver, name, make())


def _collection_kind(collection: Any) -> str:
    name = str(collection.name)
    return "lessons" if "-lessons-" in name else "icl" if "-icl" in name else "critiques"


def install() -> None:
    """Patch the moments in (once, in the zygote, before any fork)."""
    original_run, original_arun = calls.run_plan, calls.arun_plan

    def run_plan(plan: Any, *args: Any, **kwargs: Any) -> Any:
        return original_run(_proxied(plan), *args, **kwargs)

    async def arun_plan(plan: Any, *args: Any, **kwargs: Any) -> Any:
        return await original_arun(_proxied(plan), *args, **kwargs)

    calls.run_plan, calls.arun_plan = run_plan, arun_plan  # type: ignore[assignment]

    original_open = runner.open_checkpointer

    @asynccontextmanager
    async def open_checkpointer(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with original_open(*args, **kwargs) as saver:
            if saver is not None:
                _instrument_saver(saver)
            yield saver

    runner.open_checkpointer = open_checkpointer  # type: ignore[assignment]

    for method in ("add", "upsert", "update", "delete"):
        original = getattr(Collection, method)

        def make(original: Any = original, method: str = method) -> Any:
            def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
                label = f"chroma-{method}-{_collection_kind(self)}"
                return _moments_around(label, original)(self, *args, **kwargs)

            return wrapped

        setattr(Collection, method, make())

    original_interrupt = search_review.interrupt

    def interrupt(value: Any) -> Any:
        moment("review-interrupt")
        decision = original_interrupt(value)
        moment("review-decided")
        return decision

    search_review.interrupt = interrupt

    original_finalize = search_graph.finalize

    def finalize(*args: Any, **kwargs: Any) -> Any:
        moment("finalize")
        return original_finalize(*args, **kwargs)

    search_graph.finalize = finalize  # type: ignore[assignment]

    original_replace, original_write_text = Path.replace, Path.write_text

    def replace(self: Path, target: Any) -> Any:
        name = Path(target).name
        if name not in (ARTIFACT_FILE, REPORT_FILE):
            return original_replace(self, target)
        return _moments_around(f"file-{name}", original_replace)(self, target)

    def write_text(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name != CONFIG_FILE:
            return original_write_text(self, *args, **kwargs)
        return _moments_around(f"file-{self.name}", original_write_text)(self, *args, **kwargs)

    Path.replace = replace  # type: ignore[assignment, method-assign]
    Path.write_text = write_text  # type: ignore[method-assign]

    original_line = JsonlTracer._on_run_update

    def on_run_update(self: JsonlTracer, run: Any) -> None:
        original_line(self, run)
        moment("trace-line")

    JsonlTracer._on_run_update = on_run_update  # type: ignore[method-assign]


def start_logging(log_dir: Path, kill_at: int | str | None) -> None:
    """Instrument this (forked) process: log into ``log_dir`` and die at ``kill_at``."""
    for name in ("generated", "finished", "moments"):
        _Process.fds[name] = os.open(log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _Process.kill_at = kill_at


def moments_seen() -> int:
    """How many moments this process has reached."""
    return _Process.count
