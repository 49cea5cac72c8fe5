"""The beam search itself, on scripted models with known rewards."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from langchain_core.messages import BaseMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from drpo_agents import AlignmentArtifact, DRPOConfig, create_drpo_graph
from drpo_agents.errors import DRPOError

from .fakes import ScriptedChatModel, last_human, scripted, tag

QUERIES = [f"Question number {i} about gardening?" for i in range(10)]


def responder() -> ScriptedChatModel:
    # The answer reveals which prompt produced it, so the judge can score prompts directly.
    return scripted(
        lambda msgs: f"ANSWER UNDER [{next(m.content for m in msgs if isinstance(m, SystemMessage))}]"
    )


def judge(score_of: Callable[[str], int | str]) -> ScriptedChatModel:
    def script(msgs: list[BaseMessage]) -> dict[str, object] | str:
        text = last_human(msgs)
        if "<answer>" not in text:
            return {"reasoning": "r", "selected_aspects": ["Helpfulness", "Clarity"]}
        prompt = re.search(r"ANSWER UNDER \[(.*)\]", tag(text, "answer"), re.S)
        score = score_of(prompt.group(1) if prompt else "")
        if score == "garbage":
            return "no idea"
        return {
            "scores": [{"aspect": a, "rationale": "r", "score": score} for a in ("Helpfulness", "Clarity")]
        }

    return scripted(script)


def rewriter(fail_for: str | None = None) -> ScriptedChatModel:
    def script(msgs: list[BaseMessage]) -> dict[str, object]:
        current = tag(last_human(msgs), "current_prompt")
        if current == fail_for:
            return {"proposals": []}
        return {
            "proposals": [{"analysis": "a", "thought": "t", "new_prompt": f"{current}/{i}"} for i in range(3)]
        }

    return scripted(script)


def run(score_of: Callable[[str], int | str], config: DRPOConfig, **kwargs: object) -> AlignmentArtifact:
    graph = create_drpo_graph(
        responder(), judge(score_of), kwargs.pop("rewriter", rewriter()), config=config, icl_examples=[]
    )
    out = graph.compile().invoke({"queries": QUERIES, "run_id": "t"})
    return AlignmentArtifact.model_validate(out["artifact"])


def by_depth(prompt: str) -> int:
    # root scores 1; each rewrite step adds the child index + 1 (child 2 is always best), capped at 4.
    steps = [int(x) for x in prompt.split("/")[1:]]
    return min(4, 1 + sum(1 for s in steps if s == 2)) if steps else 1


def test_beam_keeps_the_best_children_by_mean_reward_and_records_the_tree() -> None:
    scores = {
        "S": 1,
        "S/0": 2,
        "S/1": 4,
        "S/2": 3,
        "S/1/0": 1,
        "S/1/1": 2,
        "S/1/2": 5,
        "S/2/0": 5,
        "S/2/1": 4,
        "S/2/2": 1,
    }
    art = run(
        lambda p: scores.get(p, 1),
        DRPOConfig(beam_size=2, n_actions=3, depth=2, initial_prompt="S", shuffle_queries=False),
    )
    level1, level2 = art.levels[1], art.levels[2]
    assert [art.candidate(c).prompt for c in level1.beam] == ["S/1", "S/2"]
    # Level 2 ranks by mean of (root, level1, level2): S/1/2 -> (1+4+5)/3, S/2/0 -> (1+3+5)/3.
    assert [art.candidate(c).prompt for c in level2.beam] == ["S/1/2", "S/2/0"]
    assert art.system_prompt == "S/1/2"
    assert art.candidate(art.best_candidate_id).rewards == [1, 4, 5]
    # Every candidate (1 root + 3 + 6 children) is in the tree with its parent.
    assert len(art.candidates) == 10
    parents = {c.id: c.parent_id for c in art.candidates}
    assert art.candidate(parents[art.best_candidate_id]).prompt == "S/1"
    # One evaluation per candidate (one query per level); levels use distinct queries in order.
    assert len(art.evaluations) == 10
    assert [lv.query_ids for lv in art.levels] == [["q0001"], ["q0002"], ["q0003"]]
    assert art.usage["rewriter"].calls == 3 and art.usage["responder"].calls == 10


def test_high_scoring_candidate_is_carried_unchanged_and_depth_extends() -> None:
    art = run(lambda p: 5, DRPOConfig(beam_size=2, depth=2, max_depth_increase=3, initial_prompt="S"))
    # Every level is skipped: the same prompt is carried forward, no rewrites happen.
    assert {c.prompt for c in art.candidates} == {"S"}
    assert all(c.carried for c in art.candidates if c.level > 0)
    assert all(level.skipped for level in art.levels[1:])
    assert len(art.levels) == 1 + 2 + 3  # root level + depth + all extensions
    assert art.levels[-1].depth_limit == 5
    assert "rewriter" not in art.usage


def test_extension_is_capped_and_per_level() -> None:
    art = run(
        lambda p: 5 if p == "S" else 2,
        DRPOConfig(beam_size=1, depth=3, max_depth_increase=1, initial_prompt="S"),
    )
    # Level 1 carries S (extension 1, the cap); S scores 5 again so it is carried at every level.
    assert len(art.levels) == 1 + 3 + 1


def test_search_stops_when_queries_run_out() -> None:
    art = run(by_depth, DRPOConfig(depth=50, max_depth_increase=0, initial_prompt="S"))
    assert len(art.levels) == len(QUERIES)
    assert art.notes[-1] == "stopped: used all 10 training queries"


def test_minibatch_reward_is_the_mean_over_the_level_queries() -> None:
    art = run(by_depth, DRPOConfig(depth=2, queries_per_step=3, initial_prompt="S"))
    assert [len(lv.query_ids) for lv in art.levels] == [3, 3, 3]
    assert len(art.evaluations) == 3 * (1 + 3 + 3 * 2)


def test_failed_rewrites_and_judge_garbage_are_recorded_not_scored() -> None:
    config = DRPOConfig(beam_size=2, depth=2, initial_prompt="S", max_parse_retries=0)
    art = run(lambda p: "garbage" if p == "S/0" else by_depth(p), config, rewriter=rewriter(fail_for="S/2"))
    failed = [e for e in art.evaluations if e.error]
    assert [e.candidate_id for e in failed] == ["c1-0-0"] and failed[0].reward is None
    assert any(f.step == "evaluate" and f.candidate_id == "c1-0-0" for f in art.levels[1].failures)
    assert any(
        f.step == "rewrite" and (f.candidate_id or "").startswith("c1-0") for f in art.levels[2].failures
    )
    # The failed child never enters the beam; the search still finishes.
    assert "c1-0-0" not in art.levels[1].beam and len(art.levels) == 3


def test_unevaluable_initial_prompt_stops_with_a_clear_error() -> None:
    graph = create_drpo_graph(
        responder(),
        judge(lambda p: "garbage"),
        rewriter(),
        config=DRPOConfig(max_parse_retries=0),
        icl_examples=[],
    )
    with pytest.raises(DRPOError, match="initial prompt could not be evaluated"):
        graph.compile().invoke({"queries": QUERIES})


async def test_async_and_sync_runs_give_the_same_search() -> None:
    config = DRPOConfig(depth=3, initial_prompt="S", seed=7)
    graph = create_drpo_graph(
        responder(), judge(by_depth), rewriter(), config=config, icl_examples=[]
    ).compile(checkpointer=InMemorySaver())
    inputs = {"queries": QUERIES, "run_id": "same"}
    async_out = await graph.ainvoke(inputs, {"configurable": {"thread_id": "a"}, "max_concurrency": 4})
    sync_out = graph.invoke(inputs, {"configurable": {"thread_id": "b"}})
    a, b = (AlignmentArtifact.model_validate(o["artifact"]) for o in (async_out, sync_out))
    assert a.model_dump(exclude={"created_at"}) == b.model_dump(exclude={"created_at"})
    assert a.system_prompt == "S/2/2/2"


def test_shuffled_query_order_depends_only_on_the_seed() -> None:
    orders = [
        [lv.query_ids[0] for lv in run(by_depth, DRPOConfig(depth=3, seed=seed, initial_prompt="S")).levels]
        for seed in (1, 1, 2)
    ]
    assert orders[0] == orders[1] != orders[2]


def test_icl_stage_runs_first_and_the_search_uses_the_optimized_examples() -> None:
    from drpo_agents.icl_sets import load_seed_icl_examples

    seeds = load_seed_icl_examples()
    graph = create_drpo_graph("sandbox", "sandbox", config=DRPOConfig(depth=2, icl_iters=2, icl_k=2))
    out = graph.compile(checkpointer=InMemorySaver()).invoke(
        {"queries": QUERIES, "run_id": "icl"}, {"configurable": {"thread_id": "icl"}}
    )
    art = AlignmentArtifact.model_validate(out["artifact"])
    assert len(art.icl_optimization) == len(seeds)
    improved = [r for r in art.icl_optimization if r.best_round > 0]
    assert improved, "the sandbox ICL stage should improve at least one seed answer"
    by_id = {e.id: e for e in art.icl_examples}
    assert all(by_id[r.example_id].answer == r.final_answer != r.original_answer for r in improved)
    assert art.usage["rewriter"].calls >= len(improved)


def test_validation_reranks_the_final_beam_on_held_out_queries() -> None:
    # The search prefers ".../0" children on training queries, but on validation queries
    # (the last 3 of the bank) the ".../1" line scores better: validation must pick it.
    validation = set(QUERIES[-3:])

    def score(prompt: str) -> int:
        return 4 if prompt.endswith("/0") else 3

    def judge_by_query(msgs: list[BaseMessage]) -> dict[str, object] | str:
        text = last_human(msgs)
        if "<answer>" not in text:
            return {"reasoning": "r", "selected_aspects": ["Helpfulness", "Clarity"]}
        prompt = re.search(r"ANSWER UNDER \[(.*)\]", tag(text, "answer"), re.S).group(1)  # type: ignore[union-attr]
        value = score(prompt) if tag(text, "query") not in validation else (5 if prompt.endswith("/1") else 2)
        return {
            "scores": [{"aspect": a, "rationale": "r", "score": value} for a in ("Helpfulness", "Clarity")]
        }

    config = DRPOConfig(beam_size=2, depth=2, initial_prompt="S", shuffle_queries=False, validation_size=3)
    graph = create_drpo_graph(
        responder(), scripted(judge_by_query), rewriter(), config=config, icl_examples=[]
    )
    art = AlignmentArtifact.model_validate(
        graph.compile().invoke({"queries": QUERIES, "run_id": "v"})["artifact"]
    )
    assert art.candidate(art.search_best_candidate_id).prompt.endswith("/0")
    assert art.system_prompt.endswith("/1") and art.best_candidate_id != art.search_best_candidate_id
    rows = {r.candidate_id: r for r in art.validation}
    assert set(rows) == {*art.levels[-1].beam, "c0"}  # the final beam plus the initial prompt
    assert rows[art.best_candidate_id].mean == 5 and rows["c0"].mean == 2 and rows["c0"].std == 0
    # Validation queries are never used for the search itself.
    assert not {q for lv in art.levels for q in lv.query_ids} & {"q0008", "q0009", "q0010"}


def test_minibatch_reports_the_spread_of_per_query_rewards() -> None:
    def noisy(msgs: list[BaseMessage]) -> dict[str, object]:
        text = last_human(msgs)
        if "<answer>" not in text:
            return {"reasoning": "r", "selected_aspects": ["Helpfulness", "Clarity"]}
        value = 5 if "number 1 " in tag(text, "query") or "number 3 " in tag(text, "query") else 1
        return {
            "scores": [{"aspect": a, "rationale": "r", "score": value} for a in ("Helpfulness", "Clarity")]
        }

    config = DRPOConfig(depth=1, queries_per_step=2, shuffle_queries=False, initial_prompt="S")
    graph = create_drpo_graph(responder(), scripted(noisy), rewriter(), config=config, icl_examples=[])
    art = AlignmentArtifact.model_validate(graph.compile().invoke({"queries": QUERIES})["artifact"])
    # Level 0 judges queries 1 and 2 (scores 5 and 1): mean 3, spread 2.
    assert art.levels[0].level_rewards == [3.0] and art.levels[0].level_reward_stds == [2.0]


def test_token_budget_stops_at_a_level_boundary_and_prices_give_a_cost() -> None:
    prices = {"scripted-test-model": {"input_per_million": 1000.0, "output_per_million": 2000.0}}
    config = DRPOConfig(depth=10, initial_prompt="S", max_tokens_budget=400, prices=prices)
    art = run(by_depth, config)
    spent = sum(u.total_tokens for u in art.usage.values())
    assert "token budget reached" in art.notes[-1]
    assert 400 <= spent < 400 + 300  # stopped at the first boundary past the budget
    assert len(art.levels) < 11
    expected = sum(u.input_tokens * 1000 + u.output_tokens * 2000 for u in art.usage.values()) / 1e6
    assert art.cost == pytest.approx(expected)


def test_cost_is_none_when_a_role_has_no_price() -> None:
    assert run(by_depth, DRPOConfig(depth=1, initial_prompt="S")).cost is None


async def test_role_concurrency_caps_calls_in_flight_per_role() -> None:
    import asyncio

    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}

    class Slow(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            role = (
                "judge"
                if "<answer>" in last_human(messages) or "<query>" in last_human(messages)
                else "responder"
            )
            in_flight[role] = in_flight.get(role, 0) + 1
            peak[role] = max(peak.get(role, 0), in_flight[role])
            await asyncio.sleep(0)  # yield so concurrent tasks overlap
            await asyncio.sleep(0)
            in_flight[role] -= 1
            return self._generate(messages, stop, run_manager, **kwargs)

    judge_model = Slow(script=judge(by_depth).script, calls=[], stops=[])
    config = DRPOConfig(
        depth=2,
        beam_size=3,
        n_actions=3,
        queries_per_step=3,
        initial_prompt="S",
        role_concurrency={"judge": 2},
    )
    graph = create_drpo_graph(responder(), judge_model, rewriter(), config=config, icl_examples=[])
    await graph.compile().ainvoke({"queries": QUERIES}, {"max_concurrency": 16})
    assert peak["judge"] == 2


@pytest.mark.parametrize(
    ("decision", "expected_prompt"),
    [
        ({"action": "approve"}, "S/2/2"),
        ({"action": "reject"}, "S"),
        ({"action": "edit", "prompt": "Edited."}, "Edited."),
    ],
)
def test_review_interrupt_lets_a_person_approve_edit_or_reject(
    decision: dict[str, str], expected_prompt: str
) -> None:
    from langgraph.types import Command

    graph = create_drpo_graph(
        responder(),
        judge(by_depth),
        rewriter(),
        config=DRPOConfig(depth=2, initial_prompt="S", review=True),
        icl_examples=[],
    ).compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "review"}}
    paused = graph.invoke({"queries": QUERIES}, thread)
    assert "artifact" not in paused
    request = graph.get_state(thread).interrupts[0].value
    assert request["prompt"] == "S/2/2" and request["initial_prompt"] == "S"
    out = graph.invoke(Command(resume=decision), thread)
    art = AlignmentArtifact.model_validate(out["artifact"])
    assert art.system_prompt == expected_prompt and art.review["action"] == decision["action"]
    if decision["action"] == "edit":
        assert art.candidate(art.best_candidate_id).parent_id == art.search_best_candidate_id


def test_invalid_review_decision_is_asked_again() -> None:
    from langgraph.types import Command

    graph = create_drpo_graph(
        responder(),
        judge(by_depth),
        rewriter(),
        config=DRPOConfig(depth=1, initial_prompt="S", review=True),
        icl_examples=[],
    ).compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "bad"}}
    graph.invoke({"queries": QUERIES}, thread)
    again = graph.invoke(Command(resume={"action": "maybe"}), thread)
    assert "artifact" not in again
    assert "invalid review decision" in graph.get_state(thread).interrupts[0].value["error"]
    out = graph.invoke(Command(resume={"action": "approve"}), thread)
    assert out["artifact"]["review"]["action"] == "approve"


def test_a_sandbox_judge_instance_pairs_with_the_sandbox_rewriter_by_default() -> None:
    from drpo_agents.models.sandbox import SandboxJudge

    config = DRPOConfig(depth=1, n_actions=2)
    graph = create_drpo_graph("sandbox", SandboxJudge(seed=3), config=config)
    art = AlignmentArtifact.model_validate(graph.compile().invoke({"queries": QUERIES})["artifact"])
    assert art.models["rewriter"] == "drpo-sandbox:rewriter(seed=3)"
    assert not art.levels[1].failures and len(art.levels[1].beam) == 2
