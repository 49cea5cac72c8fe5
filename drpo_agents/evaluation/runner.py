"""``evaluate`` and ``aevaluate``: run the harness's call plans one at a time or concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from typing_extensions import Unpack

from drpo_agents.evaluation.harness import Harness
from drpo_agents.evaluation.options import EvaluationKeywords, EvaluationOptions
from drpo_agents.evaluation.records import EvaluationReport
from drpo_agents.infra.calls import CallPlan, arun_plan, run_plan


async def aevaluate(
    queries: Sequence[Any],
    options: EvaluationOptions | None = None,
    **keywords: Unpack[EvaluationKeywords],
) -> EvaluationReport:
    """Async :func:`evaluate`: the same arguments; up to ``max_concurrency`` answer or comparison
    tasks are in flight at once (each makes its model calls one after another)."""
    harness = Harness.build(queries, EvaluationOptions.of_call(options, keywords))
    gate = asyncio.Semaphore(harness.options.max_concurrency)

    async def bounded(plan: CallPlan[Any], scope: str) -> Any:
        async with gate:
            return await arun_plan(plan, scope=scope)

    try:
        tasks = harness.answer_tasks()
        done = await asyncio.gather(
            *(bounded(harness.plan_answer(s, q), harness.answer_scope(s, q)) for s, q in tasks)
        )
        answers = {(s.name, q["id"]): record for (s, q), record in zip(tasks, done, strict=True)}
        comparisons = harness.comparisons(answers)
        judged = await asyncio.gather(
            *(
                bounded(harness.plan_compare(o, q, a, b), harness.compare_scope(o, q, a, b))
                for o, q, a, b in comparisons
            )
        )
    finally:
        harness.close()
    pairs = {(o, q["id"]): record for (o, q, _, _), record in zip(comparisons, judged, strict=True)}
    return harness.report(answers, pairs)


def evaluate(
    queries: Sequence[Any],
    options: EvaluationOptions | None = None,
    **keywords: Unpack[EvaluationKeywords],
) -> EvaluationReport:
    """Answer held-out ``queries`` under every setup, judge each answer, and compare setups pairwise.

    Blocking and sequential (one model call at a time); :func:`aevaluate` runs tasks concurrently.

    Args:
        queries: held-out queries (strings or ``{"id", "query"}`` dicts).
        options: an :class:`EvaluationOptions` (the models, setups, bootstrap and call settings).
        **keywords: its fields as keywords instead (``responder=..., judge=..., artifact=...``),
            overriding ``options`` where both are given. ``responder`` and ``judge`` are required.

    Raises:
        ConfigError: invalid options, queries or setups, or queries the artifact was optimised on.
    """
    harness = Harness.build(queries, EvaluationOptions.of_call(options, keywords))
    try:
        answers = {
            (s.name, q["id"]): run_plan(harness.plan_answer(s, q), scope=harness.answer_scope(s, q))
            for s, q in harness.answer_tasks()
        }
        pairs = {
            (o, q["id"]): run_plan(harness.plan_compare(o, q, a, b), scope=harness.compare_scope(o, q, a, b))
            for o, q, a, b in harness.comparisons(answers)
        }
    finally:
        harness.close()
    return harness.report(answers, pairs)
