"""Storing what a search level taught in the critique memory (the ``remember`` node), and
recording the run as finished there once its last level is stored."""

from __future__ import annotations

import asyncio

from langchain_core.runnables import RunnableLambda

from drpo_agents.memory import Critique, RunLedger
from drpo_agents.search.beam import by_candidate_and_query
from drpo_agents.search.context import SearchContext
from drpo_agents.search.records import Evaluation
from drpo_agents.search.state import DRPOState, DRPOUpdate

YIELDS_BEFORE_REMEMBER = 8  # event-loop turns for the level's model calls to be sent first


def remember_node(ctx: SearchContext) -> RunnableLambda[DRPOState, DRPOUpdate]:
    """The ``remember`` node: :func:`remember_level` under ``invoke`` and ``ainvoke``.

    Chroma's writes hold the GIL for tens of milliseconds, and a Chroma server's take a network
    round trip: the write starts only after the superstep's other tasks had their turns (so the
    level's model calls are sent first: a worker thread started at once would grab the GIL before
    them), and then runs in a worker thread, so it never holds up the event loop (a server's,
    shared with other runs and requests)."""

    def run(state: DRPOState) -> DRPOUpdate:
        return remember_level(ctx, state)

    async def arun(state: DRPOState) -> DRPOUpdate:
        for _ in range(YIELDS_BEFORE_REMEMBER):
            await asyncio.sleep(0)
        return await asyncio.to_thread(remember_level, ctx, state)

    return RunnableLambda(run, afunc=arun, name="remember")


def remember_level(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Store the critiques of the last ranked level in the critique memory: one batched,
    idempotent write. It runs beside the next level's model calls (or the end of the search), so
    its latency (tens of ms per Chroma upsert) is off the critical path; rewrites therefore
    recall the run's own critiques from two levels back on (see ``recall_critiques``).

    After the search's last level, the run is recorded as finished in a :class:`RunLedger`
    memory: its critiques are all stored, and runs that begin from then on may recall them."""
    if ctx.memory is None or not state.get("levels"):
        return {}
    level = max(summary["level"] for summary in state["levels"])
    search_records = [r for r in state.get("evaluations", []) if r.get("phase", "search") == "search"]
    records = [r for rs in by_candidate_and_query(search_records, level).values() for r in rs.values()]
    ctx.memory.remember(_critiques(ctx, state["run_id"], records))
    if state.get("stop_reason") and isinstance(ctx.memory, RunLedger):
        ctx.memory.finish_run(state["run_id"], state.get("memory_owner", ""))
    return {}


def _critiques(ctx: SearchContext, run_id: str, records: list[Evaluation]) -> list[Critique]:
    return [
        Critique(
            query=record["query"],
            aspect=score["aspect"],
            score=score["score"],
            rationale=score["rationale"],
            run_id=run_id,
            responder_model=ctx.models["responder"],
            candidate_id=record["candidate_id"],
            level=record["level"],
            query_id=record["query_id"],
        )
        for record in sorted(records, key=lambda r: (r["candidate_id"], r["query_id"]))
        if not record.get("error")
        for score in record["scores"]
    ]
