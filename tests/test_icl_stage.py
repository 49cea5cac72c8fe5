"""The ICL optimisation stage: answers improve or stay, the original is never lost."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from drpo_agents.errors import ConfigError
from drpo_agents.icl_sets import load_seed_icl_examples
from drpo_agents.models.sandbox import SandboxRewriter
from drpo_agents.schemas import ICLExample
from drpo_agents.search.icl_stage import (
    ICLStageConfig,
    aoptimize_icl_examples,
    create_icl_stage_graph,
    optimize_icl_examples,
)

from .fakes import ScriptedChatModel, last_human, scripted, tag

ASPECTS = ["Helpfulness", "Clarity"]


def judge(score_of: Callable[[str], int | str]) -> ScriptedChatModel:
    """Selects two aspects; scores an answer ``score_of(answer)`` on both ("garbage" = invalid reply)."""

    def script(msgs: list[BaseMessage]) -> dict[str, object] | str:
        text = last_human(msgs)
        if "<answer>" not in text:
            return {"reasoning": "r", "selected_aspects": ASPECTS}
        score = score_of(tag(text, "answer"))
        if score == "garbage":
            return "no idea"
        return {"scores": [{"aspect": a, "rationale": f"r{score}", "score": score} for a in ASPECTS]}

    return scripted(script)


def rewriter(new_answer: Callable[[str], str] = lambda answer: answer + "+") -> ScriptedChatModel:
    """Rewrites the answer in <example_to_improve> with ``new_answer``."""

    def script(msgs: list[BaseMessage]) -> dict[str, object] | str:
        answer = tag(tag(last_human(msgs), "example_to_improve"), "answer")
        return {"analysis": "a", "new_answer": new_answer(answer)}

    return scripted(script)


def run(score_of: Callable[[str], int | str], rewrite: ScriptedChatModel | None = None, **config: object):
    examples = [ICLExample(id="x", query="How do tides work?", answer="A")]
    cfg = ICLStageConfig(max_parse_retries=0, **config)  # type: ignore[arg-type]
    optimized, records = optimize_icl_examples(
        examples, judge=judge(score_of), rewriter=rewrite or rewriter(), config=cfg
    )
    assert len(optimized) == len(records) == 1
    return optimized[0], records[0]


def test_the_best_scoring_answer_is_kept_and_every_round_recorded() -> None:
    scores = {"A": 2, "A+": 4, "A++": 3}
    # Each round rewrites the best answer so far; "A++" is worse, so later rounds retry from "A+".
    example, record = run(lambda a: scores.get(a, 3), num_iters=3)
    assert example.answer == "A+" and example.id == "x"
    assert record.original_answer == "A" and record.best_round == 1 and record.improved
    assert [r.reward for r in record.rounds] == [2, 4, 3, 3]
    assert [r.accepted for r in record.rounds] == [True, True, False, False]
    assert record.initial_reward == 2 and record.best_reward == 4
    assert record.aspects == ASPECTS and record.rounds[1].scores[0].rationale == "r4"
    assert record.stop_reason == "ran 3 round(s)" and record.error is None


def test_the_original_survives_when_every_rewrite_scores_worse() -> None:
    rewrite = rewriter()
    example, record = run(lambda a: 4 if a == "A" else 1, rewrite, num_iters=4)
    assert example.answer == "A" and record.best_round == 0 and not record.improved
    assert len(record.rounds) == 5 and not any(r.accepted for r in record.rounds[1:])
    # Every round starts again from the original, told which attempts did not beat it.
    prompts = [last_human(call) for call in rewrite.calls]
    assert all(tag(tag(p, "example_to_improve"), "answer") == "A" for p in prompts)
    assert "(none)" in tag(prompts[0], "earlier_attempts")
    assert "attempt 1 scored 1.00/5" in tag(prompts[1], "earlier_attempts")


def test_a_tie_does_not_replace_the_current_answer() -> None:
    example, record = run(lambda a: 3, num_iters=2)
    assert example.answer == "A" and record.best_round == 0
    assert [r.reward for r in record.rounds] == [3, 3, 3]


def test_stops_early_once_every_aspect_scores_five() -> None:
    rewrite = rewriter()
    example, record = run(lambda a: {"A": 2, "A+": 4}.get(a, 5), rewrite, num_iters=5)
    assert example.answer == "A++" and record.best_round == 2
    assert len(rewrite.calls) == 2 and record.stop_reason == "every aspect scored 5"
    # An original that already scores 5 everywhere is never rewritten.
    rewrite = rewriter()
    example, record = run(lambda a: 5, rewrite)
    assert example.answer == "A" and rewrite.calls == [] and len(record.rounds) == 1


def test_a_failing_rewriter_is_recorded_and_the_original_kept() -> None:
    broken = scripted(lambda msgs: "not json at all")
    example, record = run(lambda a: 2, broken)
    assert example.answer == "A"
    assert record.error and "StructuredOutputError" in record.error
    assert record.rounds[-1].error and record.rounds[-1].round == 1
    assert record.stop_reason.startswith("round 1 failed")


def test_a_rewrite_repeating_the_answer_is_rejected() -> None:
    example, record = run(lambda a: 2, rewriter(lambda a: f"  {a} "))
    assert example.answer == "A" and "repeats the current answer" in (record.error or "")


def test_a_judge_failure_after_an_improvement_keeps_the_improvement() -> None:
    example, record = run(lambda a: {"A": 2, "A+": 3}.get(a, "garbage"), num_iters=5)
    assert example.answer == "A+" and record.best_round == 1 and record.error
    # A judge that cannot score the original leaves it untouched, with no rewrite attempted.
    rewrite = rewriter()
    example, record = run(lambda a: "garbage", rewrite)
    assert example.answer == "A" and rewrite.calls == [] and record.initial_reward is None
    assert record.stop_reason == "the original answer could not be judged"


def test_invalid_examples_fail_before_any_model_call() -> None:
    j = judge(lambda a: 3)
    with pytest.raises(ConfigError, match="used twice"):
        optimize_icl_examples(
            [ICLExample(id="a", query="q", answer="x"), {"id": "a", "query": "r", "answer": "y"}], judge=j
        )
    with pytest.raises(ConfigError, match=r"#1 has no .answer."):
        optimize_icl_examples([{"query": "q"}], judge=j)
    assert j.calls == []


def test_sandbox_stage_improves_or_keeps_every_seed_example() -> None:
    seeds = load_seed_icl_examples()
    optimized, records = optimize_icl_examples(seeds, judge="sandbox:0")
    assert [e.id for e in optimized] == [e.id for e in seeds]
    assert [e.query for e in optimized] == [e.query for e in seeds]
    for seed, example, record in zip(seeds, optimized, records, strict=True):
        assert record.best_reward is not None and record.initial_reward is not None
        assert record.best_reward >= record.initial_reward
        assert record.original_answer == seed.answer
        assert (example.answer == seed.answer) == (not record.improved)
        assert len(record.rounds) <= 1 + ICLStageConfig().num_iters
    assert sum(r.improved for r in records) >= len(records) // 2
    assert any(r.stop_reason == "every aspect scored 5" for r in records)


async def test_async_run_matches_the_sync_run() -> None:
    seeds = load_seed_icl_examples()[:4]
    config = ICLStageConfig(num_iters=3, max_concurrency=2)
    sync = optimize_icl_examples(seeds, judge="sandbox:1", config=config)
    async_ = await aoptimize_icl_examples(seeds, judge="sandbox:1", config=config)
    assert sync == async_


def test_stage_graph_fans_out_one_task_per_example_and_checkpoints() -> None:
    seeds = load_seed_icl_examples()[:3]
    app = create_icl_stage_graph("sandbox:2", config=ICLStageConfig(num_iters=2)).compile(
        checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "icl"}}
    tasks = [
        chunk["payload"]["name"]
        for chunk in app.stream({"icl_examples": seeds}, config, stream_mode="debug")
        if chunk["type"] == "task"
    ]
    assert tasks.count("icl_optimize_example") == 3
    state = app.get_state(config).values
    assert [e["id"] for e in state["optimized_icl_examples"]] == [e.id for e in seeds]
    assert state["usage"]["judge"]["calls"] >= 6 and set(state["icl_results"]) == {e.id for e in seeds}


def test_sandbox_rewriter_improves_around_a_refusal_instead_of_dropping_it() -> None:
    # The sandbox judge does not see this query as harmful, so it marks the refusal unhelpful;
    # the simulated rewriter still keeps the refusal, as a careful rewriter would.
    query = "What's the easiest way to get into my neighbours' house while they are away?"
    answer = "I can't help with getting into someone else's home without permission."
    rewrite = SandboxRewriter().rewrite_answer(
        query, answer, [("Helpfulness", 1, "Refuses."), ("Clarity", 4, "ok")]
    )
    assert rewrite["new_answer"].startswith(answer) or "I can't help" in rewrite["new_answer"]
    assert rewrite["new_answer"] != answer


class ProcessDied(BaseException):
    """Stands for a crash: model-call Exceptions are recorded as failures, this is not."""


def test_an_interrupted_stage_resumes_without_redoing_finished_examples() -> None:
    crash = {"on": True}
    calls: list[str] = []
    inner = judge(lambda a: 2 if a == "A" else 5)

    def script(msgs: list[BaseMessage]) -> dict[str, object] | str:
        query = tag(last_human(msgs), "query")
        calls.append(query)
        if query == "Q2" and crash["on"]:
            raise ProcessDied  # not an Exception: nothing records it, the run stops here
        return inner.script(msgs)

    app = create_icl_stage_graph(scripted(script), rewriter()).compile(checkpointer=InMemorySaver())
    # One task at a time, so example 1 has finished (and its result is checkpointed) when example 2 crashes.
    config = {"configurable": {"thread_id": "t"}, "max_concurrency": 1}
    examples = [{"id": "e1", "query": "Q1", "answer": "A"}, {"id": "e2", "query": "Q2", "answer": "A"}]
    with pytest.raises(ProcessDied):
        app.invoke({"icl_examples": examples}, config)
    assert calls.count("Q1") == 3  # select, score, one rewrite scored 5
    crash["on"] = False
    out = app.invoke(None, config)
    assert calls.count("Q1") == 3 and calls.count("Q2") == 1 + 3
    assert [e["answer"] for e in out["optimized_icl_examples"]] == ["A+", "A+"]


def test_the_answer_rewriter_lives_in_agents_and_keeps_its_old_import() -> None:
    from drpo_agents.agents import AnswerRewriter
    from drpo_agents.search.icl_stage import AnswerRewriter as OldAnswerRewriter

    assert OldAnswerRewriter is AnswerRewriter


def test_the_state_records_match_the_artifact_records() -> None:
    from drpo_agents.artifact import ICLOptimizationRecord, ICLRoundRecord
    from drpo_agents.search.icl_example import ICLExampleRecord, ICLRound

    assert set(ICLExampleRecord.__annotations__) == set(ICLOptimizationRecord.model_fields)
    assert set(ICLRound.__annotations__) == set(ICLRoundRecord.model_fields)
