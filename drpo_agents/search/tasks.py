"""The level's task fan-out: routers that build the rewrite, aspect and evaluate payloads (``Send``)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import HumanMessage
from langgraph.types import Send

from drpo_agents.conversations import history_messages
from drpo_agents.retrieval import fit_icl_budget, retrieval_text
from drpo_agents.rewards import SAFETY_ASPECT
from drpo_agents.search.beam import latest_evaluations, level_batch
from drpo_agents.search.context import SearchContext, current_examples
from drpo_agents.search.records import (
    AspectTask,
    Candidate,
    EvaluateTask,
    Evaluation,
    ICLShot,
    Query,
    RewriteCase,
    RewriteTask,
    shot_of,
)
from drpo_agents.search.state import DRPOState


def route_level_work(ctx: SearchContext, state: DRPOState) -> list[Send | str]:
    """Fan out this level's rewrites and aspect selections, or end the search; beside either,
    store the last ranked level's critiques (``remember``)."""
    remember = ["remember"] if ctx.memory is not None and state.get("levels") else []
    if state.get("stop_reason"):
        return [*remember, *ctx.selection.route_search_end(ctx, state)]
    ctx.recall_methods(state)
    sends: list[Send | str] = [
        Send("rewrite", rewrite_task(ctx, state, parent_id, state["beam"].index(parent_id)))
        for parent_id in state.get("to_rewrite", [])
    ]
    queries = [
        *level_batch(state, state["level"], ctx.config.queries_per_step),
        *ctx.selection.level_zero_queries(state),
    ]
    sends += aspect_sends("select_aspects", state, queries, state["level"])
    return [*remember, *(sends or ["dispatch_evaluations"])]


def aspect_sends(node: str, state: DRPOState, queries: Sequence[Query], level: int) -> list[Send]:
    """One aspect-selection task per query whose aspects are not cached yet."""
    cache = state.get("aspect_cache", {})
    validation_ids = {q["id"] for q in state.get("validation_bank", [])}
    sends = []
    for q in queries:
        if q["id"] in cache:
            continue
        task = AspectTask(
            run_id=state["run_id"],
            query_id=q["id"],
            query=q["query"],
            level=level,
            # The safety constraint needs a Safety score on every red-team validation query.
            required_aspects=[SAFETY_ASPECT]
            if q["id"] in validation_ids and q.get("category") == "red_team"
            else [],
        )
        if "history" in q:
            task["history"] = q["history"]
        sends.append(Send(node, task))
    return sends


def route_evaluations(ctx: SearchContext, state: DRPOState) -> list[Send] | str:
    """One ``evaluate`` task per (new candidate, training query) of this level."""
    level = state["level"]
    children = sorted((c for c in state["candidates"].values() if c["level"] == level), key=lambda c: c["id"])
    batch = level_batch(state, level, ctx.config.queries_per_step)
    shots = retrieve_shots(ctx, state, batch)
    sends = [
        evaluation_send("evaluate", state, child, q, shots, phase="search", level=level)
        for child in children
        for q in batch
    ]
    return sends or "select_beam"


def retrieve_shots(
    ctx: SearchContext, state: DRPOState, queries: Sequence[Query]
) -> dict[str, list[ICLShot]]:
    """The ICL examples for each query (within the ICL token budget), by query id; a conversation's
    are retrieved on the conversation, as ``with_alignment`` retrieves them in an app."""
    # Retrieved in the router, once per query, and carried in the task: a resumed process
    # restores pending tasks without re-running the router.
    retriever = ctx.retriever(current_examples(state))
    budget = ctx.config.max_icl_tokens

    def text(q: Query) -> str:
        return retrieval_text([*history_messages(q.get("history", [])), HumanMessage(q["query"])])

    return {
        q["id"]: [shot_of(e) for e in fit_icl_budget(retriever.retrieve(text(q), ctx.config.icl_k), budget)]
        for q in queries
    }


def evaluation_send(
    node: str,
    state: DRPOState,
    candidate: Candidate,
    query: Query,
    shots: dict[str, list[ICLShot]],
    *,
    phase: str,
    level: int,
) -> Send:
    """A ``Send`` to ``node`` (``evaluate`` or ``validate``) answering ``query`` under ``candidate``."""
    task = EvaluateTask(
        run_id=state["run_id"],
        candidate_id=candidate["id"],
        prompt=candidate["prompt"],
        level=level,
        phase=phase,
        query_id=query["id"],
        query=query["query"],
        aspects=state["aspect_cache"][query["id"]]["selected_aspects"],
        icl=shots[query["id"]],
    )
    if "history" in query:
        task["history"] = query["history"]
    if "system" in query:
        task["system"] = query["system"]
    return Send(node, task)


def rewrite_task(ctx: SearchContext, state: DRPOState, parent_id: str, rank: int) -> RewriteTask:
    """The rewrite of one beam candidate: its prompt, its ancestors' prompts and its last judged answers."""
    candidates = state["candidates"]
    history: list[str] = []
    ancestor = candidates[parent_id].get("parent_id")
    while ancestor is not None and len(history) < ctx.config.prompt_history:
        prompt = candidates[ancestor]["prompt"]
        if prompt not in history and prompt != candidates[parent_id]["prompt"]:
            history.insert(0, prompt)
        ancestor = candidates[ancestor].get("parent_id")
    histories = {q["id"]: q["history"] for q in state["query_bank"] if "history" in q}

    def case(record: Evaluation) -> RewriteCase:
        shown: RewriteCase = {
            "query": record["query"],
            "answer": record["answer"],
            "scores": record["scores"],
        }
        if record["query_id"] in histories:
            shown["history"] = histories[record["query_id"]]
        return shown

    task: RewriteTask = {
        "run_id": state["run_id"],
        "parent_id": parent_id,
        "rank": rank,
        "level": state["level"],
        "prompt": candidates[parent_id]["prompt"],
        "previous_prompts": history,
        "cases": [case(r) for r in latest_evaluations(state, parent_id)],
    }
    if "memory_runs" in state:
        task["memory_runs"] = state["memory_runs"]
    return task
