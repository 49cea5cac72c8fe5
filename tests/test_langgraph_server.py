"""Serving the DRPO graph through a real ``langgraph dev`` server, driven by the LangGraph SDK.

The server runs in its own environment (``.ci/run`` builds ``.venv-server`` with
``langgraph-cli[inmem]``, which pins older grpcio/protobuf than our dependencies); the SDK client
runs here. The server gets the repo's ``langgraph.json`` with its paths made absolute, so it can
run in a temporary folder: its ``.langgraph_api`` state stays out of the checkout, and a
developer's ``.env`` cannot swap the offline sandbox models for real ones. Its auth
(drpo_agents.server_auth) gets one user's bearer token, which :func:`sdk_client` sends.

Without the CLI the test is skipped; CI sets ``DRPO_REQUIRE_SERVER=1``, and then a server that is
missing or does not start is a failure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drpo_agents import DRPOConfig, create_drpo_graph
from drpo_agents.memory import InMemoryCritiqueMemory

from .conftest import REPO_ROOT
from .servers import _free_port

langgraph_sdk = pytest.importorskip("langgraph_sdk", reason="langgraph-sdk is installed with langgraph")

pytestmark = pytest.mark.server

CONFIG = {"beam_size": 2, "n_actions": 2, "depth": 2, "queries_per_step": 1, "seed": 0}
QUERIES = [
    "How do tides work?",
    {"id": "picnic", "query": "Plan a picnic for six people."},
    "Write a haiku about rain.",
]
NODES = {
    *("prepare", "select_aspects", "dispatch_evaluations", "evaluate"),
    *("rewrite", "select_beam", "next_level", "remember", "finalize"),
}
REQUIRED = os.environ.get("DRPO_REQUIRE_SERVER") == "1"
STARTUP_SECONDS = 90  # ~3 s warm; importing chromadb & co. from a cold disk takes longer
TOKEN = secrets.token_urlsafe(24)  # the bearer token of this module's server (drpo_agents.server_auth)


def _unavailable(reason: str) -> None:
    """Skip, or fail where CI requires the server (DRPO_REQUIRE_SERVER=1)."""
    if REQUIRED:
        pytest.fail(f"DRPO_REQUIRE_SERVER=1 but {reason}")
    pytest.skip(reason)


def _langgraph_cli() -> Path | None:
    """``DRPO_LANGGRAPH_BIN``, else ``.venv-server/bin/langgraph``, else ``langgraph`` on PATH."""
    if configured := os.environ.get("DRPO_LANGGRAPH_BIN"):
        return Path(configured)
    for candidate in (REPO_ROOT / ".venv-server" / "bin" / "langgraph", shutil.which("langgraph")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _server_config(workdir: Path) -> Path:
    """The repo's langgraph.json, with graph paths and dependencies resolved against the repo."""
    config = json.loads((REPO_ROOT / "langgraph.json").read_text())
    assert config["graphs"] == {
        "drpo": "./graphs/drpo.py:graph",
        "realign": "./graphs/realign.py:graph",
    }, config["graphs"]

    def absolute(path: str) -> str:
        return str((REPO_ROOT / path).resolve()) if path.startswith(".") else path

    config["graphs"] = {
        name: ":".join([absolute(spec.split(":")[0]), *spec.split(":")[1:]])
        for name, spec in config["graphs"].items()
    }
    config["dependencies"] = [absolute(dep) for dep in config.get("dependencies", [])]
    assert config["auth"]["path"] == "./graphs/auth.py:auth", config["auth"]
    config["auth"]["path"] = ":".join([absolute("./graphs/auth.py"), "auth"])
    config.pop("env", None)  # a developer's .env would override the sandbox models below
    path = workdir / "langgraph.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _tail(log: Path, lines: int = 40) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace")) if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_until_ready(url: str, port: int, process: subprocess.Popen[bytes], log: Path) -> str | None:
    """Poll ``/ok`` until the server answers on *our* port; None when ready, else why not."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"`langgraph dev` exited with code {process.returncode} before it was ready"
        # `langgraph dev` silently moves to another port when ours was taken meanwhile.
        if moved := re.search(r"Port \d+ is already in use, using port (\d+)", _tail(log, 200)):
            return f"port {port} was taken; the server moved to {moved.group(1)}"
        try:
            with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                if json.load(response).get("ok") is True:
                    return None
        except (OSError, ValueError):
            pass
        threading.Event().wait(0.1)
    return f"`langgraph dev` did not answer on {url}/ok within {STARTUP_SECONDS} s"


@contextmanager
def running_server(
    tmp_path_factory: pytest.TempPathFactory, auth_env: Mapping[str, str], *, allow_blocking: bool = False
) -> Iterator[tuple[str, Path]]:
    """A real ``langgraph dev`` on 127.0.0.1 serving langgraph.json's graphs with the sandbox models.

    ``auth_env`` is the server's auth configuration (``DRPO_SERVER_*`` variables of
    drpo_agents.server_auth); none of this process's own ``DRPO_SERVER_*`` variables reach it.
    Without ``allow_blocking`` the server's blocking-call check is on, as ``langgraph dev`` starts:
    a drpo graph run that blocked the server's event loop fails.
    """
    cli = _langgraph_cli()
    if cli is None:
        _unavailable(
            "the LangGraph CLI is not installed (.ci/run installs it into .venv-server: "
            "python3 -m venv .venv-server && .venv-server/bin/pip install -e . 'langgraph-cli[inmem]'; "
            "or set DRPO_LANGGRAPH_BIN)"
        )
    assert cli is not None
    workdir = tmp_path_factory.mktemp("langgraph-dev")
    config = _server_config(workdir)
    log = workdir / "server.log"
    # No license check, LangSmith or control-plane traffic from the server: drop their keys.
    keys = {
        "LANGSMITH_API_KEY",
        "LANGCHAIN_API_KEY",
        "LANGGRAPH_CLOUD_LICENSE_KEY",
        "LANGSMITH_CONTROL_PLANE_API_KEY",
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in keys and not key.startswith("DRPO_SERVER_")
    }
    env.update(
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",  # the CLI's usage ping
        LANGGRAPH_NO_VERSION_CHECK="true",  # the server's PyPI version check
        ANONYMIZED_TELEMETRY="False",
        DRPO_RESPONDER="sandbox",
        DRPO_JUDGE="sandbox",
        DRPO_REWRITER="",
        DRPO_CONFIG=json.dumps(CONFIG),
        CRON_SCHEDULER_SLEEP_TIME="1",  # look for due cron jobs every second, not every 5
        PYTHONUNBUFFERED="1",
    )
    env.update(auth_env)
    port = _free_port()
    command = [str(cli), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"]
    if allow_blocking:
        # The realign graph's search does file and SQLite work on drpo's own event loop, in the worker
        # thread of a sync node; the in-memory server's blocking-call check flags every thread with a loop.
        command += ["--allow-blocking"]
    command += ["--config", str(config)]
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            process = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            _unavailable(f"cannot run {cli}: {exc}")
    url = f"http://127.0.0.1:{port}"
    try:
        if problem := _wait_until_ready(url, port, process, log):
            message = f"{problem}; server log ({log}):\n{_tail(log)}"
            if any(s in _tail(log, 10_000) for s in ("Failed to load graph", "errors.ConfigError")):
                pytest.fail(message)  # our graph or auth setting is broken: never a reason to skip
            _unavailable(message)
        print(f"langgraph dev ready on {url} after {time.monotonic() - started:.1f} s")
        yield url, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)


@pytest.fixture(scope="module")
def langgraph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server of this module's tests, with one user's bearer token (see :func:`sdk_client`)."""
    with running_server(tmp_path_factory, {"DRPO_SERVER_TOKENS": f"server-test:{TOKEN}"}) as server:
        yield server


@pytest.fixture(scope="module")
def realign_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A server for the realign graph: its search runs on drpo's own loop in a worker thread, which
    the dev server's blocking-call check flags (see docs/REALIGN.md)."""
    env = {"DRPO_SERVER_TOKENS": f"server-test:{TOKEN}"}
    with running_server(tmp_path_factory, env, allow_blocking=True) as server:
        yield server


def sdk_client(url: str, token: str = "") -> Any:
    """A LangGraph SDK client that sends ``token`` (default: this module's user) as a bearer token."""
    headers = {"Authorization": f"Bearer {token or TOKEN}"}
    return langgraph_sdk.get_sync_client(url=url, api_key=None, headers=headers)


def _in_process_artifacts(inputs: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """``runs`` runs of ``inputs`` one after another in this process, on one memory, as the
    server's runs share its memory (graphs/drpo.py opens it once; drpo_agents.serving)."""
    memory = InMemoryCritiqueMemory()
    graph = create_drpo_graph("sandbox", "sandbox", config=DRPOConfig.model_validate(CONFIG), memory=memory)
    return [graph.compile().invoke(inputs)["artifact"] for _ in range(runs)]


def test_sandbox_optimisation_through_langgraph_server(langgraph_server: tuple[str, Path]) -> None:
    url, log = langgraph_server
    client = sdk_client(url)
    inputs = {"queries": QUERIES, "run_id": "server-test"}
    try:
        # The graph of langgraph.json is registered as assistant "drpo".
        assistants = client.assistants.search(graph_id="drpo")
        assert [a["name"] for a in assistants] == ["drpo"], assistants
        assistant_id = assistants[0]["assistant_id"]

        # A thread, and a run on it streamed node by node.
        thread = client.threads.create(metadata={"purpose": "drpo-server-test"})
        thread_id = thread["thread_id"]
        nodes: list[str] = []
        for part in client.runs.stream(thread_id, assistant_id, input=inputs, stream_mode="updates"):
            assert part.event != "error", part.data
            if part.event == "updates":
                nodes.extend(part.data)
        runs = client.runs.list(thread_id)
        assert [run["status"] for run in runs] == ["success"], runs
        assert client.threads.get(thread_id)["status"] == "idle"
        state = client.threads.get_state(thread_id)

        # The same input once more, as a stateless run that waits for the output.
        output = client.runs.wait(None, assistant_id, input=inputs)
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__}: {exc}\nserver log:\n{_tail(log)}")

    assert nodes[0] == "prepare" and "finalize" in nodes[-2:], nodes  # beside the last "remember"
    assert set(nodes) == NODES, nodes

    values = state["values"]
    artifact = values["artifact"]
    assert state["next"] == [], state["next"]  # finished, not paused
    assert values["stop_reason"] and values["level"] == CONFIG["depth"]

    # The server ran DRPO_CONFIG with the sandbox models on our queries.
    assert artifact["run_id"] == "server-test"
    assert {k: artifact["config"][k] for k in CONFIG} == CONFIG
    assert set(artifact["models"]) == {"responder", "judge", "rewriter"}
    assert all(m.startswith("drpo-sandbox:") for m in artifact["models"].values()), artifact["models"]
    assert any("SIMULATION" in note for note in artifact["notes"])

    # A real search: depth + 1 levels, every answer judged 1..5, an improved prompt.
    assert [level["level"] for level in artifact["levels"]] == list(range(CONFIG["depth"] + 1))
    evaluations = artifact["evaluations"]
    assert evaluations and nodes.count("evaluate") == len(evaluations)
    assert all(1 <= e["reward"] <= 5 and e["answer"] for e in evaluations), evaluations
    assert {e["query"] for e in evaluations} <= {q if isinstance(q, str) else q["query"] for q in QUERIES}
    assert len(artifact["candidates"]) > 1 and nodes.count("rewrite") > 0
    best = next(c for c in artifact["candidates"] if c["id"] == artifact["best_candidate_id"])
    assert artifact["system_prompt"] == best["prompt"] != artifact["config"]["initial_prompt"]
    assert best["level"] == CONFIG["depth"] and artifact["best_candidate_id"] == values["beam"][0]

    # The run's output is the graph's output schema, and the server computes what the library does.
    assert set(output) <= {"artifact", "beam", "to_rewrite", "stop_reason"}, sorted(output)
    # The second run recalls what the first stored in the server's memory, as in-process.
    for result, expected in zip(
        (artifact, output["artifact"]), _in_process_artifacts(inputs, 2), strict=True
    ):
        assert {**result, "created_at": None} == {**expected, "created_at": None}


def test_server_publishes_the_input_schema(langgraph_server: tuple[str, Path]) -> None:
    url, _ = langgraph_server
    client = sdk_client(url)
    assistant_id = client.assistants.search(graph_id="drpo")[0]["assistant_id"]
    schemas = client.assistants.get_schemas(assistant_id)
    assert schemas["input_schema"] is not None, "no input schema"
    assert "queries" in schemas["input_schema"]["required"]
    assert "artifact" in schemas["output_schema"]["properties"]


def test_a_refused_input_tells_the_client_why(langgraph_server: tuple[str, Path]) -> None:
    """The reason a run refuses its input reaches the client, not "An internal error occurred"."""
    url, _ = langgraph_server
    client = sdk_client(url)
    refusals = {
        "need at least": {"queries": ["How do tides work?"]},  # too few for the config
        "the last message must be the user's": {
            "queries": [{"messages": [{"role": "assistant", "content": "Hi"}]}, *QUERIES]
        },
        "ICL example #1 has no 'answer'": {"queries": QUERIES, "icl_examples": [{"query": "q"}]},
        "ICL example #2 repeats ICL example #1": {
            "queries": QUERIES,
            "icl_examples": [{"query": "q", "answer": "a"}] * 2,
        },
        "to read a file, pass load_icl_examples": {"queries": QUERIES, "icl_examples": "examples.jsonl"},
        "queries must be a list of queries, got int": {"queries": 5},
    }
    for reason, inputs in refusals.items():
        output = client.runs.wait(None, "drpo", input=inputs, raise_error=False)
        error = output.get("__error__", {}) if isinstance(output, dict) else {}
        assert error.get("error") == "ConfigError" and reason in error.get("message", ""), (reason, output)
    # A second run on a thread that holds one is refused, and the first run's state is kept.
    thread_id = client.threads.create()["thread_id"]
    first = client.runs.wait(thread_id, "drpo", input={"queries": QUERIES}, raise_error=False)
    again = client.runs.wait(thread_id, "drpo", input={"queries": QUERIES}, raise_error=False)
    assert "artifact" in first and "already holds run" in again["__error__"]["message"], again
    assert client.threads.get_state(thread_id)["values"]["artifact"] == first["artifact"]


def _wait_for_rounds(deploy_dir: Path, rounds: int, log: Path) -> None:
    """Poll the deployment's history until it holds ``rounds`` rounds (the cron job ran)."""
    from drpo_agents.realign import Deployment

    deadline = time.monotonic() + 90
    while len(Deployment(deploy_dir).history()) < rounds:
        if time.monotonic() > deadline:
            pytest.fail(f"no round {rounds} within 90 s; server log:\n{_tail(log)}")
        threading.Event().wait(0.2)


def test_realign_rounds_run_on_the_server_and_on_its_cron_schedule(
    realign_server: tuple[str, Path], tmp_path: Path
) -> None:
    """The realign graph of langgraph.json: one round as a run, the next from a cron job."""
    from drpo_agents import load_training_queries
    from drpo_agents.artifact import load_artifact
    from drpo_agents.realign import Deployment

    url, log = realign_server
    client = sdk_client(url)
    deploy, inbox = tmp_path / "alignment", tmp_path / "incoming"
    inbox.mkdir()
    training = load_training_queries()
    (inbox / "week1.jsonl").write_text("".join(json.dumps(q) + "\n" for q in training[:20]))
    inputs = {"deploy_dir": str(deploy), "queries": str(inbox)}

    output = client.runs.wait(None, "realign", input=inputs)
    assert output["record"]["decision"] == "promoted", output
    assert load_artifact(deploy).run_id == "r0001"

    (inbox / "week2.jsonl").write_text("".join(json.dumps(q) + "\n" for q in training[20:40]))
    cron = client.crons.create("realign", schedule="* * * * * *", input=inputs)  # every second
    try:
        _wait_for_rounds(deploy, 2, log)
    finally:
        client.crons.delete(cron["cron_id"])
    second = Deployment(deploy).history()[1]
    assert second.round == 2 and second.query_files == [str(inbox / "week2.jsonl")]
    assert second.decision in ("promoted", "kept") and second.run_dir == "rounds/r0002"
