"""The ``drpo`` command, run as a subprocess the way a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact

ENV = {**os.environ, "LANGSMITH_TRACING": "false", "NO_COLOR": "1", "COLUMNS": "120"}


def drpo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drpo_agents", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=300,
    )


@pytest.mark.slow
def test_optimize_sandbox_writes_run_dir_and_prints_prompt_and_curve(tmp_path: Path) -> None:
    result = drpo(
        "optimize", "--sandbox", "--depth", "3", "--max-concurrency", "4", "--run-dir", "run", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Reward per level" in result.stdout and "Best system prompt" in result.stdout
    assert "SIMULATION" in result.stdout
    artifact = AlignmentArtifact.load(tmp_path / "run" / "artifact.json")
    assert (
        artifact.system_prompt in " ".join(result.stdout.split())
        or artifact.system_prompt.splitlines()[0] in result.stdout
    )
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {
        "artifact.json",
        "config.json",
        "checkpoints.sqlite",
    }


@pytest.mark.slow
def test_optimize_json_mode_is_machine_readable(tmp_path: Path) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(f"How do I care for plant number {i}?" for i in range(6)), encoding="utf-8")
    result = drpo(
        "optimize",
        "--sandbox",
        "--queries",
        str(queries),
        "--depth",
        "2",
        "--json",
        "--run-dir",
        "r",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert Path(summary["artifact"]).name == "artifact.json" and len(summary["reward_curve"]) >= 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimize"], "no responder model"),
        (["optimize", "--sandbox", "--depth", "0"], "depth: Input should be greater than or equal to 1"),
        (["optimize", "--sandbox", "--queries", "missing.jsonl"], "query file not found"),
        (
            ["optimize", "--responder", "nosuchprovider:model", "--judge", "sandbox"],
            "cannot create the responder model",
        ),
    ],
)
def test_bad_usage_is_one_clear_error_line_and_exit_code_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = drpo(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_non_utf8_query_file_is_refused_before_any_call(tmp_path: Path) -> None:
    bad = tmp_path / "q.txt"
    bad.write_bytes(b"caf\xe9 question\nanother one\n")
    result = drpo("optimize", "--sandbox", "--queries", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "not UTF-8" in result.stderr
