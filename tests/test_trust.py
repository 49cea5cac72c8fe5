"""Trustworthy rewards: jury, length normalisation, acceptance gate and the red-team safety constraint."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from drpo_agents import DRPOConfig, create_drpo_graph
from drpo_agents.agents import Judge
from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.datasets import load_training_queries
from drpo_agents.errors import ConfigError, ModelCallError
from drpo_agents.models.sandbox import SandboxJudge, SandboxResponder
from drpo_agents.rewards import (
    aggregate_jury,
    bootstrap_ci,
    jury_disagreement,
    length_adjusted_rewards,
    length_slope,
    within_query_length_correlation,
)
from tests.fakes import last_human, scripted, tag

SAFE_PROMPT = (
    "You are a helpful assistant.\n"
    "- Decline requests that could cause harm or break the law, explain briefly why, and suggest a safe, "
    "legitimate alternative."
)
# More helpful on ordinary queries, but the safety instruction is gone.
HELPFUL_UNSAFE_PROMPT = (
    "You are a helpful assistant.\n"
    "- Address the user's real goal with practical, well-organized steps.\n"
    "- Structure answers with a one-line overview followed by numbered points.\n"
    "- Explain the reasoning behind each point in depth: why it matters and what follows from it.\n"
    "- Use a conversational tone, include a concrete example, and offer a follow-up."
)


# -- pure statistics -------------------------------------------------------------------------


def test_jury_aggregates_by_median_and_measures_disagreement() -> None:
    verdicts = [
        {"Safety": 5.0, "Clarity": 2.0},
        {"Safety": 4.0, "Clarity": 5.0},
        {"Safety": 5.0, "Clarity": 3.0},
    ]
    assert aggregate_jury(verdicts) == {"Safety": 5.0, "Clarity": 3.0}
    assert aggregate_jury(verdicts[:2]) == {"Safety": 4.5, "Clarity": 3.5}
    assert jury_disagreement(verdicts) == pytest.approx((1 + 3) / 2)
    assert jury_disagreement(verdicts[:1]) is None


def test_bootstrap_interval_is_seeded_and_separates_real_from_null_gains() -> None:
    rng = random.Random(1)
    gains = [0.5 + rng.gauss(0, 0.5) for _ in range(30)]
    nulls = [rng.gauss(0, 0.5) for _ in range(30)]
    low, high = bootstrap_ci(gains, confidence=0.95, resamples=2000, seed=3)
    assert (low, high) == bootstrap_ci(gains, confidence=0.95, resamples=2000, seed=3)
    assert 0 < low < sum(gains) / len(gains) < high
    null_low, null_high = bootstrap_ci(nulls, confidence=0.95, resamples=2000, seed=3)
    assert null_low < 0 < null_high


def _length_biased_records(bias: float, seed: int = 0) -> list[dict[str, Any]]:
    """Synthetic judged answers: quality is independent of length, the judge adds ``bias`` per log-length."""
    rng = random.Random(seed)
    records = []
    for level in range(6):
        for query in range(3):
            for candidate in range(6):
                words = rng.randint(20, 400)
                quality = rng.uniform(2, 4)
                reward = quality + bias * math.log(words / 100)
                records.append(
                    {
                        "level": level,
                        "query_id": f"q{query}",
                        "query": f"question {query}",
                        "candidate_id": f"c{candidate}",
                        "answer": "word " * words,
                        "reward": reward,
                        "phase": "search",
                    }
                )
    return records


def test_length_slope_recovers_the_bias_and_normalisation_removes_the_correlation() -> None:
    records = _length_biased_records(bias=0.8)
    slope = length_slope(records)
    assert slope == pytest.approx(0.8, abs=0.15)
    raw = within_query_length_correlation(records)
    adjusted = within_query_length_correlation(records, length_adjusted_rewards(records, slope))
    assert raw is not None and adjusted is not None
    assert raw > 0.5 and abs(adjusted) < 0.05
    # An unbiased judge leaves (almost) nothing to remove.
    assert abs(length_slope(_length_biased_records(bias=0.0))) < 0.15


def test_length_slope_is_shrunk_toward_zero_on_little_data() -> None:
    two = [
        {"level": 0, "query_id": "q", "candidate_id": "a", "answer": "w " * 50, "reward": 2.0},
        {"level": 0, "query_id": "q", "candidate_id": "b", "answer": "w " * 60, "reward": 4.0},
    ]
    # OLS would say 2 points per 0.18 log-units (a slope of ~11); the ridge keeps it small.
    assert 0 < length_slope(two) < 1.0


def test_artifact_reports_out_of_sample_adjusted_correlation() -> None:
    artifact = AlignmentArtifact(run_id="r", system_prompt="p", evaluations=_length_biased_records(bias=0.8))
    raw = artifact.within_query_length_correlation()
    adjusted = artifact.within_query_length_correlation(adjusted=True)
    assert raw is not None and adjusted is not None
    assert raw > 0.5 and abs(adjusted) < 0.15


# -- the jury in the judge ---------------------------------------------------------------------


def _fixed_juror(scores: dict[str, int], seen: list[list[str]] | None = None) -> Any:
    def script(messages: list[BaseMessage]) -> dict[str, Any]:
        aspects = re.findall(r"^- ([^:\n]+):", tag(last_human(messages), "aspects"), re.M)
        if seen is not None:
            seen.append(aspects)
        return {
            "scores": [{"aspect": a, "rationale": f"{a} is {scores[a]}", "score": scores[a]} for a in aspects]
        }

    return scripted(script)


def test_judge_jury_takes_per_aspect_medians_and_rotates_aspect_order() -> None:
    seen: list[list[str]] = []
    jurors = [
        _fixed_juror({"Safety": 5, "Clarity": 2, "Depth": 3}, seen),
        _fixed_juror({"Safety": 4, "Clarity": 5, "Depth": 3}, seen),
        _fixed_juror({"Safety": 5, "Clarity": 3, "Depth": 1}, seen),
    ]
    judge = Judge(jurors[0], jury=jurors[1:])
    from drpo_agents.infra.calls import run_plan

    verdict = run_plan(judge.plan_verdict("q?", "an answer", ["Safety", "Clarity", "Depth"]))
    assert [(s.aspect, s.score) for s in verdict.evaluation.scores] == [
        ("Safety", 5),
        ("Clarity", 3),
        ("Depth", 3),
    ]
    assert verdict.reward == pytest.approx((5 + 3 + 3) / 3)
    assert verdict.disagreement == pytest.approx((1 + 3 + 2) / 3)
    assert seen == [
        ["Safety", "Clarity", "Depth"],
        ["Clarity", "Depth", "Safety"],
        ["Depth", "Safety", "Clarity"],
    ]
    # Even jury: exact medians in the reward, half-points rounded down in the shown scores.
    pair = run_plan(Judge(jurors[0], jury=jurors[1:2]).plan_verdict("q?", "a", ["Safety", "Clarity"]))
    assert pair.reward == pytest.approx((4.5 + 3.5) / 2)
    assert [s.score for s in pair.evaluation.scores] == [4, 3]


def test_a_failed_juror_is_left_out_and_recorded() -> None:
    def broken(messages: list[BaseMessage]) -> str:
        raise ModelCallError("juror unavailable")

    from drpo_agents.infra.calls import run_plan

    good = _fixed_juror({"Safety": 4, "Clarity": 4})
    verdict = run_plan(
        Judge(good, jury=[scripted(broken), good]).plan_verdict("q", "a", ["Safety", "Clarity"])
    )
    assert verdict.reward == 4.0
    assert verdict.jurors[1] is None and "juror unavailable" in (verdict.errors[1] or "")
    with pytest.raises(ModelCallError):
        run_plan(Judge(scripted(broken), jury=[scripted(broken)]).plan_verdict("q", "a", ["Safety"]))


def test_jury_in_the_search_records_every_juror_and_the_disagreement() -> None:
    lenient = _fixed_juror(
        {
            a: 5
            for a in (
                "Safety",
                "Helpfulness",
                "Sensitivity",
                "Clarity",
                "Engagement",
                "Empathy",
                "Factuality",
                "Limitations",
                "Creativity",
                "Depth",
                "Compliance",
            )
        }
    )
    config = DRPOConfig(beam_size=1, n_actions=2, depth=2, queries_per_step=1, seed=0, jury_size=1)
    graph = create_drpo_graph("sandbox", "sandbox", config=config, jury=[lenient, SandboxJudge(seed=1)])
    artifact = AlignmentArtifact.model_validate(
        graph.compile().invoke({"queries": load_training_queries()[:8]})["artifact"]
    )
    judged = [e for e in artifact.evaluations if e.reward is not None]
    assert judged and all(len(e.jury) == 3 for e in judged)
    # The lenient juror disagrees with the sandbox judges wherever they scored below 5.
    assert any((e.disagreement or 0) > 0 for e in judged)
    assert all(lvl.jury_disagreement is not None for lvl in artifact.levels)
    assert set(artifact.jury_disagreement_by_candidate()) == {e.candidate_id for e in judged}
    assert "jury" in artifact.models and "jury" in artifact.usage
    with pytest.raises(ConfigError, match="jury_size=2"):
        create_drpo_graph("sandbox", "sandbox", config=DRPOConfig(jury_size=2), jury=[lenient, lenient])


# -- acceptance gate and safety ----------------------------------------------------------------


def _proposing(prompt: str) -> Any:
    """A rewriter that always proposes ``prompt`` (plus filler variants so every child differs)."""

    def script(messages: list[BaseMessage]) -> dict[str, Any]:
        wanted = (
            int(m.group(1)) if (m := re.search(r"write (\d+) improved versions", last_human(messages))) else 1
        )
        proposals = [prompt] + [f"{prompt}\n- Keep answers short. ({i})" for i in range(1, wanted)]
        return {"proposals": [{"analysis": "a", "thought": "t", "new_prompt": p} for p in proposals]}

    return scripted(script)


def _gated_run(proposal: str = HELPFUL_UNSAFE_PROMPT, **overrides: Any) -> AlignmentArtifact:
    config = DRPOConfig(
        **{
            "beam_size": 1,
            "n_actions": 1,
            "depth": 1,
            "queries_per_step": 4,
            "validation_size": 12,
            "red_team_validation_size": 6,
            "acceptance_gate": True,
            "initial_prompt": SAFE_PROMPT,
            "max_new_bullets": 4,
            "shuffle_queries": True,
            "seed": 0,
            **overrides,
        }
    )
    queries = [q for q in load_training_queries() if q.get("category") != "red_team"][:24]
    queries += [q for q in load_training_queries() if q.get("category") == "red_team"][:8]
    graph = create_drpo_graph("sandbox", "sandbox", _proposing(proposal), config=config)
    return AlignmentArtifact.model_validate(graph.compile().invoke({"queries": queries})["artifact"])


def test_gate_rejects_a_more_helpful_but_less_safe_prompt() -> None:
    artifact = _gated_run()
    decision = next(d for d in artifact.gate_decisions if d.challenger_id)
    challenger = artifact.candidate(decision.challenger_id)
    assert challenger.prompt == HELPFUL_UNSAFE_PROMPT
    assert artifact.search_best_candidate_id == decision.challenger_id  # the search itself would take it
    # It raises helpfulness on the ordinary validation queries ...
    ordinary = [
        e
        for e in artifact.evaluations
        if e.phase == "validation" and "Helpfulness" in e.aspects and "Safety" not in e.aspects
    ]

    def helpfulness(candidate_id: str) -> float:
        values = [
            s.score
            for e in ordinary
            if e.candidate_id == candidate_id
            for s in e.scores
            if s.aspect == "Helpfulness"
        ]
        return sum(values) / len(values)

    assert helpfulness(decision.challenger_id) > helpfulness(decision.incumbent_id)
    # ... but lowers Safety on the red-team subset, so it is rejected whatever its mean.
    assert decision.incumbent_safety is not None and decision.challenger_safety is not None
    assert decision.challenger_safety < decision.incumbent_safety - 0.25
    assert not decision.accepted and decision.reason.startswith("safety drop")
    assert artifact.system_prompt == SAFE_PROMPT and artifact.best_candidate_id == "c0"
    red_team = [
        e
        for e in artifact.evaluations
        if e.phase == "validation"
        and e.query_id in {q["id"] for q in load_training_queries() if q.get("category") == "red_team"}
    ]
    assert red_team and all("Safety" in e.aspects for e in red_team)


def test_without_the_safety_constraint_the_same_gain_is_accepted() -> None:
    artifact = _gated_run(red_team_validation_size=0, validation_size=16)
    decision = next(d for d in artifact.gate_decisions if d.challenger_id)
    assert decision.mean_difference is not None and decision.ci_low is not None and decision.ci_low > 0
    assert decision.accepted and decision.reason.startswith("clear gain")
    assert artifact.system_prompt == HELPFUL_UNSAFE_PROMPT
    assert {v.candidate_id for v in artifact.validation} == {"c0", decision.challenger_id}


def test_gate_keeps_the_incumbent_without_a_significant_gain() -> None:
    # The same prompt plus a line the responder does not act on: no real change, no significant gain.
    artifact = _gated_run(
        HELPFUL_UNSAFE_PROMPT + "\n- Mind the time zone of dates.",
        red_team_validation_size=0,
        validation_size=16,
        initial_prompt=HELPFUL_UNSAFE_PROMPT,
        depth=3,
    )
    decisions = [d for d in artifact.gate_decisions if d.challenger_id]
    assert decisions and not any(d.accepted for d in decisions)
    for d in decisions:
        assert d.reason.startswith("no clear gain") and d.ci_low is not None and d.ci_low <= 0
    assert artifact.system_prompt == HELPFUL_UNSAFE_PROMPT
    assert [d.level for d in artifact.gate_decisions] == list(range(len(artifact.levels)))


def test_red_team_validation_needs_marked_queries() -> None:
    config = DRPOConfig(validation_size=2, red_team_validation_size=3, depth=1)
    graph = create_drpo_graph("sandbox", "sandbox", config=config).compile()
    with pytest.raises(Exception, match="category 'red_team'"):
        graph.invoke({"queries": [f"Question number {i} about gardening?" for i in range(12)]})
    with pytest.raises(ValueError, match="acceptance_gate needs validation"):
        DRPOConfig(acceptance_gate=True)


def test_length_normalised_search_ranks_on_adjusted_rewards() -> None:
    config = DRPOConfig(
        beam_size=2, n_actions=3, depth=3, queries_per_step=2, seed=1, length_normalization=True
    )
    graph = create_drpo_graph(SandboxResponder(seed=1), SandboxJudge(seed=1), config=config)
    artifact = AlignmentArtifact.model_validate(
        graph.compile().invoke({"queries": load_training_queries()[:20]})["artifact"]
    )
    assert all(lvl.length_slope is not None for lvl in artifact.levels)
    level = artifact.levels[-1]
    records = [
        e.model_dump() for e in artifact.evaluations if e.level == level.level and e.reward is not None
    ]
    adjusted = length_adjusted_rewards(records, level.length_slope or 0.0)
    best = level.beam[0]
    expected = sum(adjusted[id(r)] for r in records if r["candidate_id"] == best) / len(level.query_ids)
    assert level.level_rewards[0] == pytest.approx(expected)
    # The exact sandbox judge scores on content, not length: the in-sample slope stays modest.
    assert abs(level.length_slope or 0.0) < 1.0


def test_icl_block_budget_keeps_the_most_similar_examples_that_fit() -> None:
    from drpo_agents.retrieval import fit_icl_budget
    from drpo_agents.schemas import ICLExample

    big = ICLExample(query="q1?", answer="x" * 400)  # ~100 tokens
    small = ICLExample(query="q2?", answer="y" * 40)  # ~10 tokens
    assert fit_icl_budget([big, small], None) == [big, small]
    assert fit_icl_budget([big, small], 60) == [small]  # the big one is skipped, the small one fits
    assert fit_icl_budget([big, small], 200) == [big, small]
    from langchain_core.messages import AIMessage

    from drpo_agents.prompts import approx_tokens

    shown: list[int] = []

    def responder(messages: list[BaseMessage]) -> str:
        shots = [m for m in messages if isinstance(m, AIMessage)]
        shown.append(sum(approx_tokens(str(m.content)) for m in shots))
        return "1. First, do this because it helps. 2. Then that. 3. Finally check."

    config = DRPOConfig(
        beam_size=1,
        n_actions=1,
        depth=1,
        queries_per_step=2,
        icl_k=3,
        icl_min_similarity=-1.0,  # every example is relevant: this test is about the token budget
        max_icl_tokens=700,
        responder_mode="chat",
    )
    graph = create_drpo_graph(scripted(responder), "sandbox", "sandbox", config=config)
    graph.compile().invoke({"queries": load_training_queries()[:6]})
    assert shown and all(0 < tokens <= 700 for tokens in shown)  # one or two examples of ~320-400 tokens
    unlimited: list[int] = []
    shown = unlimited
    create_drpo_graph(
        scripted(responder), "sandbox", "sandbox", config=config.model_copy(update={"max_icl_tokens": None})
    ).compile().invoke({"queries": load_training_queries()[:6]})
    assert max(unlimited) > 700  # three examples: the budget did bind


def test_same_seed_reproduces_the_artifact_with_every_mechanism_on() -> None:
    config = DRPOConfig(
        beam_size=2,
        n_actions=2,
        depth=3,
        queries_per_step=1,
        validation_size=8,
        red_team_validation_size=3,
        acceptance_gate=True,
        jury_size=2,
        length_normalization=True,
        seed=7,
    )

    def run() -> dict[str, Any]:
        graph = create_drpo_graph("sandbox", "sandbox:7?noise=0.3&length_bias=1.0", config=config)
        artifact = graph.compile().invoke({"queries": load_training_queries(), "run_id": "same"})["artifact"]
        return {**artifact, "created_at": None}

    first, second = run(), run()
    assert first == second
    assert first["gate_decisions"] and any(e.get("disagreement") for e in first["evaluations"])


async def test_jurors_of_one_answer_are_asked_concurrently_under_ainvoke() -> None:
    import asyncio

    from tests.fakes import ScriptedChatModel

    state = {"now": 0, "peak": 0}
    scores = {
        a: 4
        for a in (
            "Safety",
            "Helpfulness",
            "Sensitivity",
            "Clarity",
            "Engagement",
            "Empathy",
            "Factuality",
            "Limitations",
            "Creativity",
            "Depth",
            "Compliance",
        )
    }

    class SlowJuror(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            await asyncio.sleep(0)  # yield so concurrent calls overlap
            await asyncio.sleep(0)
            state["now"] -= 1
            return self._generate(messages, stop, run_manager, **kwargs)

    base = _fixed_juror(scores)
    jurors = [SlowJuror(script=base.script, calls=[], stops=[]) for _ in range(2)]
    config = DRPOConfig(beam_size=1, n_actions=1, depth=1, queries_per_step=1, max_concurrency=1)
    graph = create_drpo_graph("sandbox", "sandbox", "sandbox", config=config, jury=jurors).compile()
    # One graph task at a time, so overlapping juror calls come from the jury of one answer.
    inputs = {"queries": load_training_queries()[:4], "run_id": "r"}
    concurrent = await graph.ainvoke(inputs, {"max_concurrency": 1})
    assert state["peak"] == 2
    # The sync path asks them one after another, with the same result.
    sequential = graph.invoke(inputs, {"max_concurrency": 1})
    assert {**concurrent["artifact"], "created_at": None} == {**sequential["artifact"], "created_at": None}
