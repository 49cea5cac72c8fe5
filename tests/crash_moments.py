"""Crash moments: a sandbox run instrumented at every point where a crash could matter, killed at one.

A *moment* is an instrumented point of a run, counted in the order the process reaches it:
a model call's start and end (the response exists, nothing has stored it yet) and its return to
the plan that asked for it (whatever stores responses has done so: the promise is "committed
before the call returns"), each checkpoint write (``aput`` / ``aput_writes``, before and after),
each Chroma write (critiques, lessons, ICL examples; before and after), the review interrupt,
finalize, the run files (``config.json`` written, ``artifact.json`` / ``report.html`` before and
after their rename) and every trace line. With ``kill_at = N`` the process SIGKILLs itself at
moment N (with ``kill_at = "KIND"``, at the first moment whose label starts with KIND): no
cleanup, no flush, as a crash.

Processes are forked from a *zygote* (``python -m tests.crash_moments serve``) that imported
everything once and holds no thread, so one step costs the run itself, not the imports. It
reads one JSON request per line on stdin and answers one JSON line on stdout; the driver is
:mod:`tests.crash_attempts`. Per process the logs are: ``generated`` (a call reached the model),
``finished`` (its response was returned to the plan), ``moments`` (``N label``) and
``outcome.json``.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib
import json
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import chromadb
from chromadb.api.models.Collection import Collection
from langchain_core.messages import BaseMessage

from drpo_agents import api, calls
from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import load_seed_icl_examples, load_training_queries
from drpo_agents.errors import DRPOError, ReviewRequired
from drpo_agents.models.sandbox import SandboxJudge, SandboxResponder, SandboxRewriter
from drpo_agents.report import render_report, write_run_report
from drpo_agents.run_files import ARTIFACT_FILE, CONFIG_FILE, REPORT_FILE, TRACE_FILE
from drpo_agents.search import graph as search_graph
from drpo_agents.search import review as search_review
from drpo_agents.tracing import JsonlTracer, read_trace

RUN_ID = "crash"
DECISION = {"action": "approve"}


def _config(**fields: Any) -> DRPOConfig:
    return DRPOConfig(beam_size=2, n_actions=2, max_concurrency=4, seed=3, **fields)


# Small runs that together reach every stage: (config, training queries, seed ICL examples).
CONFIGS: dict[str, tuple[DRPOConfig, int, int]] = {
    # ICL stage, rewrites, evaluations, memory, end-of-run validation, the review interrupt.
    "icl-validation-review": (
        _config(depth=2, icl_iters=1, validation_size=2, review=True, max_depth_increase=0),
        10,
        4,
    ),
    # The acceptance gate validating each level's best on held-out queries.
    "gate": (_config(depth=2, queries_per_step=2, validation_size=3, acceptance_gate=True), 12, 12),
    # A plain search three levels deep (more rewrites and memory writes per run).
    "search": (_config(depth=3, max_depth_increase=0), 10, 12),
}


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

    original_open = api.open_checkpointer

    @asynccontextmanager
    async def open_checkpointer(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with original_open(*args, **kwargs) as saver:
            if saver is not None:
                _instrument_saver(saver)
            yield saver

    api.open_checkpointer = open_checkpointer  # type: ignore[assignment]

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


def run_step(request: dict[str, Any]) -> dict[str, Any]:
    """One process of an attempt: start the run, resume it, or answer its review; report how it ended."""
    config, n_queries, n_examples = CONFIGS[request["config"]]
    run_dir = Path(request["run_dir"])
    models = {role: cls(seed=0) for role, cls in MODEL_CLASSES.items()}
    common: dict[str, Any] = {
        "checkpointer": request.get("checkpointer"),
        "callbacks": [JsonlTracer(run_dir / TRACE_FILE)],
        "icl_examples": load_seed_icl_examples()[:n_examples],
        **models,
    }
    try:
        if request["mode"] == "start":
            api.optimize(
                load_training_queries()[:n_queries],
                config=config,
                run_dir=run_dir,
                run_id=RUN_ID,
                memory=request.get("memory"),
                **common,
            )
        else:
            review = DECISION if request["mode"] == "decide" else None
            api.resume(run_dir, review=review, **common)
        write_run_report(run_dir)  # as `drpo optimize` does after the run
        outcome = {"outcome": "done"}
    except ReviewRequired:
        outcome = {"outcome": "review"}
    except DRPOError as exc:
        outcome = {"outcome": "error", "error": f"{type(exc).__name__}: {exc}"}
    return {**outcome, "moments": _Process.count}


def _records(collection: Any) -> list[list[Any]]:
    got = collection.get(include=["metadatas", "documents"])
    return sorted(
        [i, json.dumps(m, sort_keys=True), d]
        for i, m, d in zip(got["ids"], got["metadatas"], got["documents"], strict=True)
    )


def dump(request: dict[str, Any]) -> dict[str, Any]:
    """What an attempt is judged on: the artifact, the Chroma records, and the run files' health."""
    run_dir = Path(request["run_dir"])
    location = request.get("memory") or str(run_dir / "chroma")
    client = (
        chromadb.HttpClient(host=location.split("//")[1].split(":")[0], port=int(location.rsplit(":", 1)[1]))
        if location.startswith("http")
        else chromadb.PersistentClient(path=location)
    )
    memory = {c.name: _records(client.get_collection(c.name)) for c in client.list_collections()}
    artifact = AlignmentArtifact.load(run_dir / ARTIFACT_FILE)
    report = (run_dir / REPORT_FILE).read_text(encoding="utf-8") if (run_dir / REPORT_FILE).exists() else ""
    try:
        trace_error = "" if read_trace(run_dir / TRACE_FILE) else "empty trace"
    except (OSError, ValueError) as exc:
        trace_error = f"{type(exc).__name__}: {exc}"
    return {
        "artifact": artifact.model_dump(mode="json", exclude={"created_at"}),
        "memory": memory,
        "report_current": report == render_report(artifact),
        "trace_error": trace_error,
    }


def _child(request: dict[str, Any]) -> None:
    log_dir = Path(request["log_dir"])
    log_dir.mkdir(parents=True, exist_ok=True)
    output = os.open(log_dir / "output.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    try:
        if request["mode"] == "dump":
            result = dump(request)
        else:
            for name in ("generated", "finished", "moments"):
                _Process.fds[name] = os.open(
                    log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
                )
            _Process.kill_at = request.get("kill_at")
            result = run_step(request)
        (log_dir / "outcome.json").write_text(json.dumps(result), encoding="utf-8")
        code = 0
    except BaseException:  # anything: the driver reads the traceback from output.txt
        import traceback

        traceback.print_exc()
        code = 70
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _wait(pid: int, kill_after_s: float | None) -> int:
    """The child's wait status; with ``kill_after_s``, SIGKILL it from outside after that delay."""
    if kill_after_s is None:
        return os.waitpid(pid, 0)[1]
    deadline = time.monotonic() + kill_after_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


# Modules a run imports lazily; imported once in the zygote rather than in every forked process.
_PRELOAD = (
    "chromadb.api.rust",
    "chromadb.telemetry.product.posthog",
    "langchain_core.output_parsers.pydantic",
    "langchain_core.runnables.fallbacks",
    "langchain_core.tools.structured",
    "langchain_core.tracers.run_collector",
    "langchain_openai.chat_models.base",
    "langgraph.checkpoint.postgres.aio",
    "langgraph.checkpoint.sqlite.aio",
    "tiktoken_ext.openai_public",
)


def serve() -> None:
    """The zygote: answer each request line by forking one process for it."""
    for module in _PRELOAD:
        importlib.import_module(module)
    install()
    if threading.active_count() != 1:
        raise SystemExit(f"zygote holds {threading.active_count()} threads: forking it is unsafe")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        started = time.perf_counter()
        status = _wait(pid, request.get("kill_after_s"))
        answer: dict[str, Any] = {"seconds": round(time.perf_counter() - started, 3)}
        if os.WIFSIGNALED(status):
            answer["signal"] = os.WTERMSIG(status)
        else:
            answer["exit"] = os.WEXITSTATUS(status)
            outcome = Path(request["log_dir"]) / "outcome.json"
            if outcome.exists():
                answer.update(json.loads(outcome.read_text(encoding="utf-8")))
        print(json.dumps(answer), flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
