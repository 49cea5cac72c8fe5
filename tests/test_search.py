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
    assert any("evaluate c1-0-0" in f for f in art.levels[1].failures)
    assert any(f.startswith("rewrite c1-0") for f in art.levels[2].failures)
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
