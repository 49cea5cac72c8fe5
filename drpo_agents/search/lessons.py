"""What a rewrite is shown from critique memory: the past critiques nearest to the parent's
failures, and the general rules distilled from earlier runs (:mod:`drpo_agents.memory.distill`)."""

from __future__ import annotations

from typing import TypedDict

from drpo_agents.memory import Critique, Lesson, ListableCritiqueMemory, RunLedger
from drpo_agents.memory.distill import Rule, distil_rules
from drpo_agents.search.context import SearchContext
from drpo_agents.search.records import RewriteTask


class _Recall(TypedDict):
    k: int
    responder_model: str | None
    run_id: str | None
    horizon: tuple[str, int]


def recall_lessons(ctx: SearchContext, task: RewriteTask) -> list[Lesson]:
    """The run's general rules first (``config.memory_rules``), then up to ``config.memory_k``
    specific critiques."""
    general = [Lesson(r.as_lesson(), "", r.runs) for r in rule_book(ctx, task)]
    specific = [Lesson(c.as_lesson(), c.query, (c.run_id,)) for c in recall_critiques(ctx, task)]
    return general + specific


def rule_book(ctx: SearchContext, task: RewriteTask) -> list[Rule]:
    """The rules distilled from earlier runs of this responder model, once per run (a run's own
    critiques are left out, so its rules do not move while it runs, and so are runs that had not
    finished when it began)."""
    memory = ctx.memory
    if not ctx.config.memory_rules or ctx.config.memory_scope == "run":
        return []
    if not isinstance(memory, ListableCritiqueMemory):
        return []  # a custom memory that cannot list its critiques: specific lessons only
    run_id, visible = task["run_id"], task.get("memory_runs")
    if run_id not in ctx.rule_books:
        earlier = [
            c
            for c in memory.critiques_of(ctx.models["responder"])
            if c.run_id != run_id and (visible is None or c.run_id in visible)
        ]
        ctx.rule_books[run_id] = distil_rules(
            earlier, embeddings=getattr(memory, "embeddings", None), max_rules=ctx.config.memory_rules
        )
    return ctx.rule_books[run_id]


def recall_critiques(ctx: SearchContext, task: RewriteTask) -> list[Critique]:
    """Past critiques similar to the parent's failures, for the rewriter (not the parent's own)."""
    assert ctx.memory is not None
    if not ctx.config.memory_k:
        return []
    # Search by the queries and what went wrong, so lessons come from similar failures.
    text = "\n".join(
        [c["query"] for c in task["cases"]]
        + [f"{s['aspect']}: {s['rationale']}" for c in task["cases"] for s in c["scores"] if s["score"] <= 3]
    )
    scope = ctx.config.memory_scope
    query: _Recall = {
        "k": ctx.config.memory_k + 5 * len(task["cases"]),
        "responder_model": ctx.models["responder"] if scope == "model" else None,
        "run_id": task["run_id"] if scope == "run" else None,
        # The run's own records from two levels back: the parent level's are being stored beside
        # this rewrite (remember.remember_level), and its parent's are in the prompt already.
        "horizon": (task["run_id"], task["level"] - 1),
    }
    if isinstance(ctx.memory, RunLedger) and "memory_runs" in task:
        # Other runs' records only from those finished when this run began.
        recalled = ctx.memory.recall(text, **query, runs=task["memory_runs"])
    else:
        recalled = ctx.memory.recall(text, **query)
    # The parent's own critiques are already in the rewrite prompt; lessons are the others.
    own = {c["query"] for c in task["cases"]}
    others = [
        c
        for c in recalled
        if not (c.run_id == task["run_id"] and c.candidate_id == task["parent_id"] and c.query in own)
    ]
    return others[: ctx.config.memory_k]
