"""The search's typed records match the artifact's pydantic records; the gate decides without a graph."""

from __future__ import annotations

from typing import get_type_hints

import pytest
from pydantic import BaseModel

from drpo_agents.artifact import (
    CandidateRecord,
    EvaluationRecord,
    FailureRecord,
    GateDecision,
    LevelRecord,
    ValidationRecord,
)
from drpo_agents.config import DRPOConfig, ModelPrice
from drpo_agents.search.budget import budget_stop, spent
from drpo_agents.search.gate import decide
from drpo_agents.search.records import (
    Candidate,
    Evaluation,
    Failure,
    GateDecisionDict,
    LevelSummary,
    ValidationRow,
    candidate_id,
    new_candidate,
)


@pytest.mark.parametrize(
    ("record", "model"),
    [
        (Candidate, CandidateRecord),
        (Evaluation, EvaluationRecord),
        (LevelSummary, LevelRecord),
        (GateDecisionDict, GateDecision),
        (ValidationRow, ValidationRecord),
        (Failure, FailureRecord),
    ],
)
def test_search_records_have_the_artifact_fields(record: type, model: type[BaseModel]) -> None:
    assert set(get_type_hints(record)) == set(model.model_fields)


def test_new_candidate_is_a_valid_artifact_record() -> None:
    child = new_candidate(
        candidate_id(2, 1, 0), parent_id="c1-0-1", prompt="Be kind.", level=2, lessons=["x"]
    )
    assert child["id"] == "c2-1-0" and child["rewards"] == [] and not child["carried"]
    assert CandidateRecord.model_validate(child).lessons == ["x"]
    assert "lessons" not in new_candidate("c0", parent_id=None, prompt="p", level=0)


def _record(
    query_id: str, reward: float, *, safety: int | None = None, answer: str = "an answer"
) -> Evaluation:
    scores = [{"aspect": "Safety", "rationale": "", "score": safety}] if safety is not None else []
    return {
        "candidate_id": "x",
        "level": 1,
        "query_id": query_id,
        "query": "q",
        "aspects": [],
        "answer": answer,
        "scores": scores,  # type: ignore[typeddict-item]
        "reward": reward,
        "error": None,
        "phase": "validation",
    }


_QUERIES = [f"q{i}" for i in range(8)]


def _decide(config: DRPOConfig, mine: list[float], theirs: list[float], **kwargs: object) -> GateDecisionDict:
    arguments: dict[str, object] = {
        "level": 1,
        "incumbent_id": "c0",
        "challenger_id": "c1-0-0",
        "incumbent": {q: _record(q, r) for q, r in zip(_QUERIES, mine, strict=False)},
        "challenger": {q: _record(q, r) for q, r in zip(_QUERIES, theirs, strict=False)},
        "query_ids": _QUERIES,
        "red_team_ids": [],
        "initial_safety": None,
        "length_slope": None,
        **kwargs,
    }
    return decide(config, **arguments)  # type: ignore[arg-type]


def test_gate_accepts_a_clear_gain_and_rejects_noise() -> None:
    config = DRPOConfig(acceptance_gate=True, validation_size=8)
    gain = _decide(config, [3.0] * 8, [4.0, 4.2, 3.9, 4.1, 4.0, 4.3, 3.8, 4.0])
    assert gain["accepted"] and gain["reason"].startswith("clear gain")
    assert gain["queries"] == 8 and gain["ci_low"] is not None and gain["ci_low"] > 0
    noise = _decide(config, [3.0, 4.0] * 4, [4.0, 3.0] * 4)
    assert not noise["accepted"] and noise["reason"].startswith("no clear gain")
    assert GateDecision.model_validate(noise).mean_difference == 0.0


def test_gate_rejects_failures_and_safety_drops() -> None:
    config = DRPOConfig(acceptance_gate=True, validation_size=8, red_team_validation_size=1)
    failed = _decide(config, [3.0] * 8, [5.0] * 7, query_ids=_QUERIES)
    assert not failed["accepted"] and failed["reason"] == "validation failures: 1 answer(s) failed"
    safe = {q: _record(q, 3.0, safety=5) for q in _QUERIES}
    unsafe = {q: _record(q, 5.0, safety=1) for q in _QUERIES}
    drop = _decide(config, [], [], incumbent=safe, challenger=unsafe, red_team_ids=["q0"])
    assert not drop["accepted"] and drop["reason"].startswith("safety drop")
    # The initial prompt's Safety is a floor too: no drift through a chain of small drops.
    worse = {q: _record(q, 3.0, safety=3) for q in _QUERIES}
    better = {q: _record(q, 5.0 - 0.01 * i, safety=3) for i, q in enumerate(_QUERIES)}
    assert _decide(config, [], [], incumbent=worse, challenger=better, red_team_ids=["q0"])["accepted"]
    floored = _decide(
        config, [], [], incumbent=worse, challenger=better, red_team_ids=["q0"], initial_safety=5.0
    )
    assert not floored["accepted"] and floored["reason"].startswith(
        "safety drop: red-team Safety 5.00 -> 3.00"
    )


def test_gate_without_a_challenger_records_why() -> None:
    config = DRPOConfig(acceptance_gate=True, validation_size=8)
    first = _decide(config, [3.0] * 8, [], challenger_id=None, challenger={}, level=0)
    assert not first["accepted"] and first["reason"] == "the initial prompt is the first incumbent"
    assert first["incumbent_mean"] == 3.0 and "queries" not in first


def test_spent_prices_every_role_or_none() -> None:
    usage = {"judge": {"calls": 1, "input_tokens": 1000, "output_tokens": 500}}
    priced = DRPOConfig(
        prices={"m": ModelPrice(input_per_million=1.0, output_per_million=2.0)}, max_cost=0.001
    )
    assert spent(priced, {"judge": "m"}, usage) == (1500, pytest.approx(0.002))
    assert spent(priced, {"judge": "other"}, usage) == (1500, None)
    assert budget_stop(priced, {"judge": "m"}, usage) == "cost budget reached (0.0020 of 0.001)"
    assert (
        budget_stop(DRPOConfig(max_tokens_budget=1500), {}, usage) == "token budget reached (1,500 of 1,500)"
    )
    assert budget_stop(DRPOConfig(), {}, usage) is None


def test_failures_are_records_and_earlier_artifacts_failure_lines_still_read() -> None:
    level = LevelRecord.model_validate(
        {
            "level": 3,
            "query_ids": [],
            "beam": [],
            "beam_mean_rewards": [],
            "level_rewards": [],
            "depth_limit": 4,
            "failures": [
                "rewrite c2-0-1: StructuredOutputError: no JSON",
                "select_aspects q0007: TimeoutError: slow",
                {"step": "evaluate", "level": 3, "error": "boom", "candidate_id": "c3-0-0"},
            ],
        }
    )
    first, second, third = level.failures
    assert (first.step, first.candidate_id, first.error, first.level) == (
        "rewrite",
        "c2-0-1",
        "StructuredOutputError: no JSON",
        3,
    )
    assert (second.step, second.query_id, second.candidate_id) == ("select_aspects", "q0007", None)
    assert str(third) == "evaluate c3-0-0: boom"
