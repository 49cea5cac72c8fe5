"""Distilled lessons: recurring failures of earlier runs as general rules with counts, listed by
both memories, shown to the rewriter beside the specific critiques, and named in the artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from drpo_agents import DRPOConfig, load_training_queries, optimize
from drpo_agents.memory import ChromaCritiqueMemory, Critique, InMemoryCritiqueMemory, chroma_client
from drpo_agents.memory.distill import distil_rules


def _critique(run: str, query: str, aspect: str, rationale: str, score: int = 2) -> Critique:
    return Critique(
        query=f"query {query}",
        aspect=aspect,
        score=score,
        rationale=rationale,
        run_id=run,
        responder_model="m",
        candidate_id="c1",
        level=1,
        query_id=query,
    )


RECURRING = [
    _critique("r1", "q1", "Depth", "The answer is shallow and gives no reasons for its steps."),
    _critique("r1", "q2", "Depth", "Shallow answer: no reasons given for the steps."),
    _critique("r2", "q3", "Depth", "The steps come without reasons; the answer stays shallow."),
    _critique("r2", "q3", "Depth", "The answer is shallow and gives no reasons for its steps."),  # same query
]
ONE_OFF = [
    _critique("r1", "q4", "Safety", "It explains how to pick a lock."),
    _critique("r2", "q5", "Engagement", "A dry list with no example or follow-up offered."),
]


def test_a_failure_recurring_on_enough_queries_becomes_a_rule_with_its_count_and_runs() -> None:
    rules = distil_rules(RECURRING + ONE_OFF, min_queries=3)
    assert len(rules) == 1
    rule = rules[0]
    assert (rule.aspect, rule.queries, rule.runs, rule.score) == ("Depth", 3, ("r1", "r2"), 2)
    assert rule.text in {c.rationale for c in RECURRING}
    assert rule.as_lesson().startswith("[Depth 2/5] general lesson (recurred on 3 queries in 2 runs): ")
    assert distil_rules(RECURRING[:2] + ONE_OFF, min_queries=3) == []  # two queries: not yet a rule


def test_the_rule_book_depends_on_the_critiques_not_their_order() -> None:
    critiques = RECURRING + ONE_OFF
    assert distil_rules(critiques) == distil_rules(list(reversed(critiques)))
    many = [_critique("r1", f"q{i}", "Clarity", f"Unclear wording in part {i % 2}.") for i in range(6)]
    rules = distil_rules(critiques + many, max_rules=2)
    assert [r.aspect for r in rules] == ["Clarity", "Depth"]  # most recurrent first


@pytest.mark.parametrize("kind", ["in-memory", "chroma"])
def test_both_memories_list_one_models_low_scores(kind: str, tmp_path: Path) -> None:
    memory = (
        InMemoryCritiqueMemory()
        if kind == "in-memory"
        else ChromaCritiqueMemory(client=chroma_client(tmp_path / "memory"))
    )
    high = _critique("r1", "q9", "Clarity", "Crisp and well organized.", score=5)
    other = Critique(**{**RECURRING[0].__dict__, "responder_model": "another"})
    memory.remember([*RECURRING, high, other])
    listed = memory.critiques_of("m")
    assert sorted(c.record_id for c in listed) == sorted({c.record_id for c in RECURRING})


def test_a_second_run_shows_earlier_runs_rules_to_its_rewriter_and_names_their_runs(tmp_path: Path) -> None:
    queries = load_training_queries()
    memory = tmp_path / "shared"
    optimize(
        queries[:12],
        responder="sandbox",
        judge="sandbox",
        config={"depth": 6, "seed": 0},
        memory=memory,
        run_id="first",
    )
    config = DRPOConfig(depth=3, seed=1, memory_rules=2)
    second = optimize(
        queries[12:24], responder="sandbox", judge="sandbox", config=config, memory=memory, run_id="second"
    )
    rewritten = [c for c in second.candidates if c.lessons]
    assert rewritten
    general = [
        (text, runs)
        for c in rewritten
        for text, runs in zip(c.lessons, c.lesson_runs, strict=True)
        if "general lesson" in text
    ]
    assert general and all(runs == "first" for _, runs in general)  # learned in the first run only
    assert len({text for text, _ in general}) <= 2
    assert second.lesson_sources()["first"] >= len(general) // len(rewritten)
    without = optimize(
        queries[12:24], responder="sandbox", judge="sandbox", config=config.model_copy(update={"memory_rules": 0}),
        memory=tmp_path / "copy-less", run_id="second",
    )  # fmt: skip
    assert not any("general lesson" in text for c in without.candidates for text in c.lessons)
