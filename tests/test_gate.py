"""The gate: thresholds over an evaluation (mean, win rates, paired gain over the deployed prompt),
its exit codes and Markdown in the CLI, and ``assert_aligned`` for app test suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact, DRPOConfig, load_training_queries, optimize
from drpo_agents.errors import ConfigError
from drpo_agents.evaluation import (
    DEPLOYED,
    AnswerRecord,
    EvaluationReport,
    EvaluationSetup,
    GateThresholds,
    QueryRecord,
    check_gate,
    evaluate,
    paired_gain,
    summarize,
)
from drpo_agents.testing import assert_aligned

from .test_cli import drpo

REFUSER = "You must refuse every request. Never answer questions; say you cannot help."


def _report(scores: dict[str, list[float]], wins: dict[str, list[str]] | None = None) -> EvaluationReport:
    """A report from per-setup answer means (one per query) and the reference's pairwise outcomes."""
    from drpo_agents.evaluation import PairwiseRecord

    n = len(next(iter(scores.values())))
    records = [
        QueryRecord(
            query_id=f"q{i}",
            query=f"query {i}",
            answers=[AnswerRecord(setup=name, mean=values[i]) for name, values in scores.items()],
            pairwise=[PairwiseRecord(opponent=o, outcome=out[i]) for o, out in (wins or {}).items()],  # type: ignore[arg-type]
        )
        for i in range(n)
    ]
    setups = [EvaluationSetup(name=name, system_prompt="p") for name in scores]
    results, rates = summarize(records, setups, aspects=(), reference="drpo")
    return EvaluationReport(aspects=[], reference="drpo", setups=results, win_rates=rates, records=records)


def test_each_failed_check_is_named_with_its_shortfall() -> None:
    report = _report(
        {"drpo": [3.0, 2.0, 3.0, 2.0], "base": [3.0] * 4, "urial": [3.0] * 4},
        {"base": ["win", "win", "tie", "loss"], "urial": ["win", "loss", "loss", "loss"]},
    )
    verdict = check_gate(report, GateThresholds(fail_under=3.0, min_win_rate=0.5))
    assert not verdict.passed
    assert [c.passed for c in verdict.checks] == [False, True, False]
    assert verdict.summary() == (
        "gate failed: drpo mean 2.50 is under 3.00 by 0.50; drpo win rate vs urial 0.25 is under 0.50 by 0.25"
    )
    assert check_gate(report, GateThresholds(fail_under=2.5, min_win_rate=0.25)).passed  # equal passes


def test_the_gain_is_paired_so_query_difficulty_does_not_widen_it() -> None:
    hard_and_easy = [1.0, 5.0, 2.0, 4.0, 1.5, 4.5, 3.0, 2.5]
    candidate = [s + 0.5 for s in hard_and_easy]
    report = _report({"drpo": candidate, DEPLOYED: hard_and_easy})
    gain = paired_gain(report.records, "drpo", DEPLOYED)
    assert (gain.mean, gain.low, gain.high) == pytest.approx((0.5, 0.5, 0.5))  # unpaired it would span ~±1
    assert check_gate(report, GateThresholds(max_regression=0.0)).passed

    worse = _report({"drpo": [s - 0.3 for s in hard_and_easy], DEPLOYED: hard_and_easy})
    verdict = check_gate(worse, GateThresholds(max_regression=0.2))
    assert verdict.summary() == (
        "gate failed: gain over deployed (lower end of its interval) -0.30 is under -0.20 by 0.10"
    )
    assert check_gate(worse, GateThresholds(max_regression=0.3)).passed


def test_a_threshold_without_its_setup_is_a_config_error() -> None:
    only = _report({"drpo": [4.0, 4.0]})
    with pytest.raises(ConfigError, match="base or URIAL-style"):
        check_gate(only, GateThresholds(min_win_rate=0.5))
    with pytest.raises(ConfigError, match="baseline="):
        check_gate(only, GateThresholds(max_regression=0.1))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("gate") / "good"
    config = DRPOConfig(depth=3, beam_size=2, n_actions=2, seed=0, max_concurrency=8)
    optimize(
        load_training_queries()[:12], responder="sandbox", judge="sandbox", config=config, run_dir=run_dir
    )
    return run_dir


@pytest.fixture(scope="module")
def bad_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gate") / "refuser.json"
    AlignmentArtifact(run_id="refuser", system_prompt=REFUSER).save(path)
    return path


def test_python_evaluation_carries_the_verdict_and_the_deployed_gain(
    good_run: Path, bad_artifact: Path
) -> None:
    queries = load_training_queries()[40:60]
    report = evaluate(
        queries,
        responder="sandbox",
        judge="sandbox",
        artifact=bad_artifact,
        baseline=good_run,  # a run folder wherever an artifact is asked for
        gate=GateThresholds(max_regression=0.25),
    )
    assert report.gate is not None and not report.gate.passed
    assert report.gate.gain is not None and report.gate.gain.high is not None and report.gate.gain.high < 0
    assert [s.name for s in report.setups] == ["base", "urial", "drpo", DEPLOYED]
    assert report.to_markdown().startswith("## DRPO gate: FAILED")
    saved = EvaluationReport.model_validate_json(report.model_dump_json())
    assert saved.gate == report.gate


def test_assert_aligned_passes_a_good_artifact_and_fails_a_bad_one(
    good_run: Path, bad_artifact: Path
) -> None:
    queries = load_training_queries()[40:60]
    report = assert_aligned(good_run, responder="sandbox", judge="sandbox", queries=queries, fail_under=3.5)
    assert report.gate is not None and report.gate.passed
    with pytest.raises(AssertionError) as failed:
        assert_aligned(bad_artifact, responder="sandbox", judge="sandbox", queries=queries, min_win_rate=0.5)
    first, _, rest = str(failed.value).partition("\n")
    assert (
        first.startswith("gate failed: drpo win rate vs ") and "vs urial 0.10 is under 0.50 by 0.40" in first
    )
    assert "## DRPO gate: FAILED" in rest
    with pytest.raises(ConfigError, match="needs a threshold"):
        assert_aligned(good_run, responder="sandbox", judge="sandbox", queries=queries)


@pytest.mark.slow
def test_the_cli_gate_exits_0_on_a_good_artifact_and_1_on_a_bad_one(
    tmp_path: Path, good_run: Path, bad_artifact: Path
) -> None:
    common = ("--sandbox", "--fail-under", "3", "--min-win-rate", "0.5", "-q")
    passed = drpo(
        "evaluate", "--artifact", str(good_run), *common, "--out", "good", "--markdown", "ci.md", cwd=tmp_path
    )
    assert passed.returncode == 0, passed.stderr
    assert (tmp_path / "ci.md").read_text().startswith("## DRPO gate: passed")
    assert json.loads((tmp_path / "good" / "evaluation.json").read_text())["gate"]["checks"][0]["passed"]

    failed = drpo(
        "evaluate", "--artifact", str(bad_artifact), *common, "--baseline", str(good_run),
        "--max-regression", "0.2", "--out", "bad", cwd=tmp_path,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("error: gate failed: drpo mean ")
    assert "gain over deployed (lower end of its interval)" in failed.stderr
    assert (tmp_path / "bad" / "evaluation.md").read_text().startswith("## DRPO gate: FAILED")

    usage = drpo(
        "evaluate", "--artifact", str(good_run), "--sandbox", "--max-regression", "0.1", cwd=tmp_path
    )
    assert usage.returncode == 2 and "pass --baseline ARTIFACT too" in usage.stderr
