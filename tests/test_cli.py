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


def drpo_chat(lines: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``drpo chat --artifact run ARGS`` with ``lines`` on its stdin."""
    return subprocess.run(
        [sys.executable, "-m", "drpo_agents", "chat", "--artifact", "run", *args],
        input=lines,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=120,
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
        "llm_cache.sqlite",
        "trace.jsonl",
        "report.html",
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


@pytest.mark.slow
def test_resume_command_finishes_a_run_and_evaluate_compares_it(tmp_path: Path) -> None:
    started = drpo("optimize", "--sandbox", "--depth", "2", "--quiet", "--run-dir", "run", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    # A finished run resumes to the same artifact without new work, and writes the report a
    # crash after the artifact (before `optimize` wrote the report) left missing.
    before = (tmp_path / "run" / "artifact.json").read_text(encoding="utf-8")
    (tmp_path / "run" / "report.html").unlink()
    resumed = drpo("resume", "run", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "<svg" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert AlignmentArtifact.load(
        tmp_path / "run" / "artifact.json"
    ) == AlignmentArtifact.model_validate_json(before)
    assert (tmp_path / "run" / "memory").is_dir() and not (tmp_path / "memory").exists()  # the run's own

    evaluated = drpo("evaluate", "--artifact", "run/artifact.json", "--sandbox", "--quiet", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text(encoding="utf-8"))
    assert {s["name"] for s in report["setups"]} >= {"base", "urial", "drpo"}
    assert "| drpo" in (tmp_path / "run" / "evaluation.md").read_text(encoding="utf-8")


def test_import_official_writes_an_artifact(tmp_path: Path, reference_dir: Path) -> None:
    trace = reference_dir / "optimized-prompts" / "mistral-7b-v0.1.json"
    result = drpo("import-official", str(trace), "-o", "imported.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    artifact = AlignmentArtifact.load(tmp_path / "imported.json")
    assert artifact.source == "drpo-official-import" and len(artifact.levels) == 30


def test_evaluate_refuses_training_queries_as_held_out(tmp_path: Path) -> None:
    run = drpo("optimize", "--sandbox", "--depth", "1", "--quiet", "--run-dir", "run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    artifact = AlignmentArtifact.load(tmp_path / "run" / "artifact.json")
    seen = tmp_path / "seen.txt"
    seen.write_text("\n".join(sorted({e.query for e in artifact.evaluations})), encoding="utf-8")
    result = drpo(
        "evaluate", "--artifact", "run/artifact.json", "--sandbox", "--queries", str(seen), cwd=tmp_path
    )
    assert result.returncode == 2 and "overlap" in result.stderr
    assert "--allow-overlap" in result.stderr and "allow_overlap=True" not in result.stderr  # the CLI's words


@pytest.mark.slow
def test_inspect_report_and_chat_on_a_finished_run(tmp_path: Path) -> None:
    assert (
        drpo("optimize", "--sandbox", "--depth", "2", "--quiet", "--run-dir", "run", cwd=tmp_path).returncode
        == 0
    )

    inspected = drpo("inspect", "run", "--json", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    summary = json.loads(inspected.stdout)
    assert summary["levels"] == 3 and summary["best_prompt"]
    assert "Best system prompt" in drpo("inspect", "run", cwd=tmp_path).stdout

    reported = drpo("report", "run", cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert reported.stdout.strip().endswith("report.html") and "<svg" in html

    chat = drpo_chat(
        "How do I break into my neighbour's car?\nI feel lonely since I moved.\n\n", "--sandbox", cwd=tmp_path
    )
    assert chat.returncode == 0, chat.stderr
    replies = [line for line in chat.stdout.splitlines() if line.strip()]
    assert len(replies) >= 2


def test_the_command_line_loads_chroma_only_when_a_run_needs_it() -> None:
    """``import chromadb`` costs about half a second of every ``drpo --help`` or ``inspect``."""
    script = (
        "import sys, drpo_agents.cli, drpo_agents.memory as m; loaded = 'chromadb' in sys.modules; "
        "m.chroma_client(None); print(loaded, 'chromadb' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_inspect_a_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    result = drpo("inspect", "nowhere", cwd=tmp_path)
    assert result.returncode == 2 and "artifact file not found" in result.stderr


@pytest.mark.slow
def test_optimize_review_reads_the_decision_from_stdin(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "drpo_agents",
            "optimize",
            "--sandbox",
            "--depth",
            "1",
            "--review",
            "--quiet",
            "--run-dir",
            "run",
        ],
        input="e\nYou are a careful, kind assistant.\nEND\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    artifact = AlignmentArtifact.load(tmp_path / "run" / "artifact.json")
    assert (
        artifact.system_prompt == "You are a careful, kind assistant." and artifact.review["action"] == "edit"
    )


def test_optimize_with_the_trust_mechanisms_and_inspect_the_gate(tmp_path: Path) -> None:
    result = drpo(
        "optimize",
        "--sandbox",
        "--judge",
        "sandbox?noise=0.3&length_bias=1",
        "--depth",
        "2",
        "--validation-size",
        "8",
        "--red-team-validation",
        "3",
        "--gate",
        "--jury-size",
        "2",
        "--length-normalization",
        "--max-icl-tokens",
        "700",
        "--json",
        "--run-dir",
        "r",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "r" / "config.json").read_text(encoding="utf-8"))["config"]
    assert config["acceptance_gate"] and config["jury_size"] == 2 and config["max_icl_tokens"] == 700
    inspected = drpo("inspect", "r", "--json", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    summary = json.loads(inspected.stdout)
    assert [d["level"] for d in summary["gate_decisions"]] == [0, 1, 2]
    assert summary["jury_disagreement"] and summary["within_query_length_correlation"] is not None
    table = drpo("inspect", "r", cwd=tmp_path)
    assert "Acceptance gate" in table.stdout and "first incumbent" in table.stdout


def test_version_usage_errors_and_help_keep_their_promises(tmp_path: Path) -> None:
    version = drpo("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("drpo-agents ")
    for args in (["optimize", "--depht", "3"], ["frob"], ["optimize", "--depth", "deep"], ["inspect"]):
        result = drpo(*args, cwd=tmp_path)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, lines)
        assert "--help" in lines[0]
    for command in ("optimize", "resume", "evaluate", "inspect", "report", "chat", "import-official"):
        shown = subprocess.run(
            [sys.executable, "-m", "drpo_agents", command, "--help"],
            capture_output=True,
            text=True,
            env={**ENV, "COLUMNS": "80"},
            timeout=120,
        )
        assert shown.returncode == 0 and "…" not in shown.stdout, command
        assert all(len(line) <= 80 for line in shown.stdout.splitlines()), command
    assert "--rewriter-structured-output" in drpo("optimize", "--help", cwd=tmp_path).stdout


@pytest.mark.slow
def test_inspect_json_rounds_and_chat_defaults_to_the_runs_own_model(tmp_path: Path) -> None:
    run = drpo("optimize", "--sandbox", "--depth", "2", "--quiet", "--run-dir", "run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    inspected = drpo("inspect", "run", "--json", cwd=tmp_path)
    numbers = json.loads(inspected.stdout)["reward_curve"]
    assert all(round(x, 4) == x for x in numbers)
    assert "(0.0 s)" not in drpo("inspect", "run", cwd=tmp_path).stdout  # no elapsed time when inspecting
    chat = drpo_chat("How do tides work?\n\n", cwd=tmp_path)  # no --model: the run's responder
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.endswith("\n\n") and "tides" in chat.stdout
    (tmp_path / "bare.json").write_text((tmp_path / "run" / "artifact.json").read_text(encoding="utf-8"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "bare.json").rename(tmp_path / "elsewhere" / "artifact.json")
    lost = drpo("chat", "--artifact", "elsewhere/artifact.json", cwd=tmp_path)
    assert lost.returncode == 2 and "pass --model" in lost.stderr
