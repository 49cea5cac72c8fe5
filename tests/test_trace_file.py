"""The trace file survives a kill mid-line: the torn last line is cut off before a resumed run appends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

from drpo_agents.errors import DRPOError
from drpo_agents.tracing import JsonlTracer, read_trace, repair_trace

from .conftest import REPO_ROOT

# A process that traces two runs and is killed (SIGKILL) halfway through writing the second line.
KILLED_MID_LINE = textwrap.dedent(
    """
    import os, signal, sys
    from langchain_core.runnables import RunnableLambda
    import drpo_agents.tracing.tracer as tracing

    tracer = tracing.JsonlTracer(sys.argv[1])
    echo = RunnableLambda(lambda x: x, name="echo")
    echo.invoke("first " * 50, {"callbacks": [tracer]})
    real_write = os.write

    def torn_write(descriptor, data):
        real_write(descriptor, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    tracing.os.write = torn_write
    echo.invoke("second " * 50, {"callbacks": [tracer]})
    """
)


def test_a_run_killed_mid_line_then_resumed_leaves_only_whole_lines(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_LINE, str(trace)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "LANGSMITH_TRACING": "false"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not trace.read_bytes().endswith(b"\n")  # the second line is torn
    (first,) = read_trace(trace)  # readers skip the torn line
    assert first["inputs"]["input"].startswith("first")

    # The resumed process opens the trace again: the torn line goes, new lines start clean.
    echo = RunnableLambda(lambda x: x, name="echo")
    echo.invoke("third", {"callbacks": [JsonlTracer(trace)]})
    lines = trace.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["echo", "echo"]  # whole lines only
    # The long first input is a shared text (written once, resolved by read_trace).
    assert [record["inputs"]["input"][:5] for record in read_trace(trace)] == ["first", "third"]


def test_repair_cuts_only_a_torn_tail(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    assert repair_trace(trace) == 0  # no file yet
    trace.write_text('{"a": 1}\n{"b": 2}\n', encoding="utf-8")
    assert repair_trace(trace) == 0 and len(read_trace(trace)) == 2
    trace.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ' + b"x" * 70_000)
    assert repair_trace(trace) == 70_006
    assert trace.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    trace.write_bytes(b'{"torn": ')
    assert repair_trace(trace) == 9 and trace.read_bytes() == b""


def test_a_damaged_line_before_the_end_is_an_error_not_a_silent_gap(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"a": 1}\n{"b": \n{"c": 3}\n', encoding="utf-8")
    with pytest.raises(DRPOError, match="line 2 is not a trace record"):
        read_trace(trace)
