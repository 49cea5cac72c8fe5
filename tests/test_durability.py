"""Crash a run with SIGKILL mid-fan-out, resume it in a new process, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact

from .conftest import REPO_ROOT

ENV = {**os.environ, "LANGSMITH_TRACING": "false", "PYTHONPATH": str(REPO_ROOT)}


def runner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.crash_runner", *args],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def comparable(artifact: AlignmentArtifact) -> dict[str, object]:
    return artifact.model_dump(exclude={"created_at"})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[AlignmentArtifact, int]:
    base = tmp_path_factory.mktemp("clean")
    result = runner(str(base / "run"), str(base / "log"), "start")
    assert result.returncode == 0, result.stderr
    return AlignmentArtifact.load(base / "run" / "artifact.json"), len(lines(base / "log" / "generated.log"))


def crash_and_resume(
    tmp_path: Path, role: str, at: int, checkpointer: str | None = None
) -> tuple[AlignmentArtifact, dict[str, list[str]]]:
    extra = [checkpointer] if checkpointer else []
    crashed = runner(str(tmp_path / "run"), str(tmp_path / "log1"), "start", role, str(at), *extra)
    assert crashed.returncode == -9, f"expected SIGKILL, got {crashed.returncode}: {crashed.stderr[-2000:]}"
    assert not (tmp_path / "run" / "artifact.json").exists()
    resumed = runner(
        str(tmp_path / "run"), str(tmp_path / "log2"), "resume", *(["none", "0", *extra] if extra else [])
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logs = {
        "finished_before": lines(tmp_path / "log1" / "finished.log"),
        "generated_before": lines(tmp_path / "log1" / "generated.log"),
        "generated_after": lines(tmp_path / "log2" / "generated.log"),
    }
    return AlignmentArtifact.load(tmp_path / "run" / "artifact.json"), logs


@pytest.mark.slow
@pytest.mark.parametrize(("role", "at"), [("judge", 3), ("responder", 9), ("rewriter", 2), ("judge", 30)])
def test_resume_after_sigkill_matches_uninterrupted_run_and_repeats_no_finished_call(
    tmp_path: Path, uninterrupted: tuple[AlignmentArtifact, int], role: str, at: int
) -> None:
    expected, clean_calls = uninterrupted
    artifact, logs = crash_and_resume(tmp_path, role, at)
    assert comparable(artifact) == comparable(expected)
    # No call whose response was durably stored before the kill is generated again.
    finished = {line for line in logs["finished_before"]}
    repeated = [line for line in logs["generated_after"] if line.split()[1] in finished]
    assert repeated == []
    # Together the two processes made as many calls as a clean run, plus the calls in flight at the
    # kill (generated, not yet stored: redone on resume, up to max_concurrency of them); identical
    # concurrent calls (two misses in one run, a miss and a cache hit in the other) make the count
    # vary by a call or two either way.
    total = len(logs["generated_before"]) + len(logs["generated_after"])
    in_flight = len(logs["generated_before"]) - len(logs["finished_before"])
    assert -2 <= total - clean_calls <= max(in_flight, 0) + 2, (clean_calls, total, in_flight)


def test_resume_of_a_finished_run_returns_its_artifact_without_calls(tmp_path: Path) -> None:
    first = runner(str(tmp_path / "run"), str(tmp_path / "log1"), "start")
    assert first.returncode == 0, first.stderr
    again = runner(str(tmp_path / "run"), str(tmp_path / "log2"), "resume")
    assert again.returncode == 0, again.stderr
    assert lines(tmp_path / "log2" / "generated.log") == []


@pytest.mark.slow
@pytest.mark.server
def test_resume_with_postgres_checkpoints(
    tmp_path: Path, postgres_url: str, uninterrupted: tuple[AlignmentArtifact, int]
) -> None:
    expected, _ = uninterrupted
    artifact, logs = crash_and_resume(tmp_path, "responder", 9, postgres_url)
    assert comparable(artifact) == comparable(expected)
    finished = set(logs["finished_before"])
    assert not [line for line in logs["generated_after"] if line.split()[1] in finished]
    assert not (tmp_path / "run" / "checkpoints.sqlite").exists()


def test_a_run_killed_before_its_checkpoint_tables_existed_has_nothing_to_resume(tmp_path: Path) -> None:
    from drpo_agents import DRPOConfig, resume
    from drpo_agents.errors import ConfigError

    record = {"run_id": "r", "config": DRPOConfig().to_json_dict(), "models": {}}
    (tmp_path / "config.json").write_text(json.dumps(record), encoding="utf-8")
    (tmp_path / "checkpoints.sqlite").write_bytes(b"")  # the saver opened the file, then the kill
    with pytest.raises(ConfigError, match=r"holds no checkpoint: .* nothing to resume"):
        resume(tmp_path, responder="sandbox", judge="sandbox")


def test_run_stopped_by_its_budget_continues_when_resumed_with_a_larger_one(tmp_path: Path) -> None:
    from drpo_agents import DRPOConfig, load_training_queries, optimize, resume

    queries = load_training_queries()[:12]
    config = DRPOConfig(depth=4, max_depth_increase=0, seed=2)
    full = optimize(
        queries, responder="sandbox", judge="sandbox", config=config, run_id="b", run_dir=tmp_path / "full"
    )
    tokens = sum(u.total_tokens for u in full.usage.values())

    limited = config.model_copy(update={"max_tokens_budget": tokens // 3})
    stopped = optimize(
        queries, responder="sandbox", judge="sandbox", config=limited, run_id="b", run_dir=tmp_path / "b"
    )
    assert "token budget reached" in stopped.notes[-1] and len(stopped.levels) < len(full.levels)

    resumed = resume(tmp_path / "b", config_overrides={"max_tokens_budget": 10 * tokens})
    assert [lv.beam for lv in resumed.levels] == [lv.beam for lv in full.levels]
    assert resumed.system_prompt == full.system_prompt
    assert resumed.notes[-1] == full.notes[-1] == "stopped: reached depth 4"
    # Finished levels were not paid for again: the total equals the uninterrupted run's.
    assert sum(u.total_tokens for u in resumed.usage.values()) == tokens


def test_review_pauses_the_run_until_a_decision_arrives(tmp_path: Path) -> None:
    from drpo_agents import DRPOConfig, ReviewRequired, load_training_queries, optimize, resume

    config = DRPOConfig(depth=2, review=True)
    with pytest.raises(ReviewRequired) as paused:
        optimize(
            load_training_queries()[:8], responder="sandbox", judge="sandbox", config=config, run_dir=tmp_path
        )
    assert paused.value.request["prompt"] and not (tmp_path / "artifact.json").exists()
    artifact = resume(tmp_path, review={"action": "edit", "prompt": "Be kind and precise."})
    assert artifact.system_prompt == "Be kind and precise." and artifact.review["action"] == "edit"

    seen: list[dict[str, object]] = []
    direct = optimize(
        load_training_queries()[:8],
        responder="sandbox",
        judge="sandbox",
        config=config,
        reviewer=lambda request: seen.append(request) or {"action": "approve"},
        run_dir=tmp_path / "second",
    )
    assert len(seen) == 1 and direct.system_prompt == seen[0]["prompt"]
