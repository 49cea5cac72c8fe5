"""``drpo evaluate`` killed mid-way and run again: finished answers and judgements come from its journal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drpo_agents import DRPOConfig, load_training_queries, optimize
from drpo_agents.datasets import load_eval_queries
from drpo_agents.infra.run_files import EVALUATION_FILE, EVALUATION_JOURNAL_FILE

from .process_runs import lines, run_module


def evaluate(log_dir: Path, kill_at: int, *arguments: str) -> subprocess.CompletedProcess[str]:
    return run_module("tests.evaluate_runner", str(log_dir), str(kill_at), "--", *arguments)


def report_of(folder: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((folder / EVALUATION_FILE).read_text(encoding="utf-8"))
    record.pop("created_at")
    return record


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, Any], int]:
    """The command's arguments (artifact, three held-out queries) and its uninterrupted report and call count."""
    base = tmp_path_factory.mktemp("evaluate")
    config = DRPOConfig(depth=1, beam_size=1, n_actions=2, queries_per_step=2, seed=1)
    optimize(
        load_training_queries()[:6], responder="sandbox", judge="sandbox", config=config, run_dir=base / "run"
    )
    queries = base / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in load_eval_queries()[:3]), encoding="utf-8")
    arguments = ["--artifact", str(base / "run" / "artifact.json"), "--queries", str(queries), "--quiet"]
    clean = evaluate(base / "log", 0, *arguments, "--out", str(base / "clean"))
    assert clean.returncode == 0, clean.stderr[-3000:]
    return arguments, report_of(base / "clean"), len(lines(base / "log" / "generated.log"))


@pytest.mark.slow
@pytest.mark.parametrize("journalled", [7, 22])
def test_evaluate_run_again_after_a_kill_reuses_finished_calls_and_writes_the_same_report(
    tmp_path: Path, inputs: tuple[list[str], dict[str, Any], int], journalled: int
) -> None:
    arguments, expected, clean_calls = inputs
    out = ["--out", str(tmp_path / "out")]
    killed = evaluate(tmp_path / "log1", journalled, *arguments, *out)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (tmp_path / "out" / EVALUATION_JOURNAL_FILE).exists()
    assert not (tmp_path / "out" / EVALUATION_FILE).exists()

    again = evaluate(tmp_path / "log2", 0, *arguments, *out)  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert report_of(tmp_path / "out") == expected
    finished = set(lines(tmp_path / "log1" / "finished.log"))
    assert len(finished) == journalled
    assert [line for line in lines(tmp_path / "log2" / "generated.log") if line.split()[1] in finished] == []
    before, after = (
        len(lines(tmp_path / "log1" / "generated.log")),
        len(lines(tmp_path / "log2" / "generated.log")),
    )
    # Only calls in flight at the kill are made twice (see test_journal's crash test).
    assert clean_calls <= before + after <= clean_calls + (before - journalled)
