"""The crash zygote: imports everything once, then forks one instrumented process per request.

``python -m tests.crash_zygote serve`` reads one JSON request per line on stdin and answers one
JSON line on stdout (the driver is :mod:`tests.crash_attempts`). It holds no thread when it
forks, so each process costs the run itself, not the imports. A process starts a small sandbox
run (:data:`CONFIGS`), resumes it, or answers its review, and writes ``outcome.json`` into its
log folder; a ``dump`` process reads what an attempt is judged on. With ``kill_after_s`` the
zygote SIGKILLs the process from outside after that delay.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import chromadb

from drpo_agents import api
from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import load_training_queries
from drpo_agents.errors import DRPOError, ReviewRequired
from drpo_agents.icl_sets import load_seed_icl_examples
from drpo_agents.infra.run_files import ARTIFACT_FILE, REPORT_FILE, TRACE_FILE
from drpo_agents.memory.stores import memory_location
from drpo_agents.report import render_report, write_run_report
from drpo_agents.tracing import JsonlTracer, read_trace

from .crash_moments import MODEL_CLASSES, install, moments_seen, start_logging

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
                run_id=request["run_id"],
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
    return {**outcome, "moments": moments_seen()}


def _records(collection: Any, run_id: str) -> list[list[Any]]:
    """A collection's records with the run's id written "RUN": a critique's record id is a hash
    of its run id, so it stands as "RUN-record" (its metadata says what it holds)."""
    got = collection.get(include=["metadatas", "documents"])
    rows = []
    for i, m, d in zip(got["ids"], got["metadatas"], got["documents"], strict=True):
        record_id = "RUN" if i == run_id else ("RUN-record" if (m or {}).get("run_id") == run_id else i)
        rows.append([record_id, json.dumps(m, sort_keys=True).replace(run_id, "RUN"), d])
    return sorted(rows)


def dump(request: dict[str, Any]) -> dict[str, Any]:
    """What an attempt is judged on: the artifact, the Chroma records, and the run files' health."""
    run_dir = Path(request["run_dir"])
    location = str(memory_location(request.get("memory"), run_dir))
    client = (
        chromadb.HttpClient(host=location.split("//")[1].split(":")[0], port=int(location.rsplit(":", 1)[1]))
        if location.startswith("http")
        else chromadb.PersistentClient(path=location)
    )
    run_id = request["run_id"]
    memory = {c.name: _records(client.get_collection(c.name), run_id) for c in client.list_collections()}
    artifact = AlignmentArtifact.load(run_dir / ARTIFACT_FILE)
    report = (run_dir / REPORT_FILE).read_text(encoding="utf-8") if (run_dir / REPORT_FILE).exists() else ""
    try:
        trace_error = "" if read_trace(run_dir / TRACE_FILE) else "empty trace"
    except (OSError, ValueError) as exc:
        trace_error = f"{type(exc).__name__}: {exc}"
    return {
        "artifact": json.loads(
            json.dumps(artifact.model_dump(mode="json", exclude={"created_at"})).replace(run_id, "RUN")
        ),
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
            start_logging(log_dir, request.get("kill_at"))
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
