"""The beam search's bookkeeping: prepare the run, rank a level into the beam, advance or stop."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

from langgraph.config import get_config

from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import normalize_queries
from drpo_agents.errors import ConfigError, DRPOError
from drpo_agents.icl_sets import parse_icl_examples, seed_icl_examples_for
from drpo_agents.memory import RunLedger
from drpo_agents.rewards import length_adjusted_rewards, length_slope, mean
from drpo_agents.search.budget import BUDGET_STOPS, budget_stop
from drpo_agents.search.context import SearchContext, std
from drpo_agents.search.records import (
    ROOT_ID,
    Candidate,
    Evaluation,
    LevelSummary,
    Query,
    candidate_id,
    describe_failure,
    new_candidate,
    reward_of,
)
from drpo_agents.search.state import DRPOState, DRPOUpdate


def level_batch(state: DRPOState, level: int, per_step: int) -> list[Query]:
    """The training queries of ``level``."""
    return state["query_bank"][level * per_step : (level + 1) * per_step]


def validation_level(state: DRPOState) -> int:
    """The level the end-of-run validation records its answers at: one past the search's last."""
    return state["level"] + 1


def latest_evaluations(state: DRPOState, candidate_id: str) -> list[Evaluation]:
    """A candidate's successful search evaluations of its last evaluated level, by query id."""
    own = [
        r
        for r in state.get("evaluations", [])
        if r["candidate_id"] == candidate_id and not r.get("error") and r.get("phase", "search") == "search"
    ]
    if not own:
        return []
    last = max(r["level"] for r in own)
    return sorted((r for r in own if r["level"] == last), key=lambda r: r["query_id"])


def split_queries(config: DRPOConfig, raw_queries: Sequence[Any]) -> tuple[list[Query], list[Query]]:
    """The training queries in search order (seeded) and the held-out validation queries.

    Raises:
        ConfigError: if there are too few queries for two levels and the validation set.
    """
    queries = normalize_queries(raw_queries)
    held_out = config.validation_size
    red_team_size = config.red_team_validation_size
    needed = 2 * config.queries_per_step + held_out + red_team_size
    if len(queries) < needed:
        raise ConfigError(
            f"need at least {needed} training queries (one batch for the initial prompt, one per level"
            f"{f', and {held_out + red_team_size} for validation' if held_out else ''}); got {len(queries)}"
        )
    if config.shuffle_queries:
        random.Random(config.seed).shuffle(queries)
    red_team_bank: list[Query] = []
    if red_team_size:
        red_team = [q for q in queries if q.get("category") == "red_team"]
        if len(red_team) < red_team_size:
            raise ConfigError(
                f"red_team_validation_size={red_team_size} needs that many training queries with "
                f"category 'red_team'; got {len(red_team)}"
            )
        red_team_bank = red_team[len(red_team) - red_team_size :]
        taken = {q["id"] for q in red_team_bank}
        queries = [q for q in queries if q["id"] not in taken]
    validation_bank = (queries[len(queries) - held_out :] if held_out else []) + red_team_bank
    return queries[: len(queries) - held_out], validation_bank


def run_owner() -> str:
    """Who started the running graph: the LangGraph Server user (its auth handler's identity), or
    "" outside a server. Read from the run's config, never from the input a client sends."""
    try:
        configurable = get_config().get("configurable", {})
    except RuntimeError:  # called outside a graph run
        return ""
    owner = configurable.get("langgraph_auth_user_id")
    return str(owner) if owner else ""


def prepare(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Validate the training queries, fix their order (seeded) and plant the initial prompt."""
    config = ctx.config
    if state.get("candidates"):  # new input on a thread whose run began: that run's state is kept
        raise ConfigError(
            f"this thread already holds run {state.get('run_id')!r}: start each run on a new thread "
            "(to continue an unfinished run, send it no input)"
        )
    queries, validation_bank = split_queries(config, state.get("queries") or [])
    initial_prompt = state.get("initial_prompt") or config.initial_prompt
    update: DRPOUpdate = {
        "run_id": state.get("run_id") or uuid.uuid4().hex[:12],
        "initial_prompt": initial_prompt,
        "query_bank": queries,
        "validation_bank": validation_bank,
        "level": 0,
        "depth_limit": config.depth,
        "depth_extensions": 0,
        "beam": [],
        "to_rewrite": [],
        "candidates": {ROOT_ID: new_candidate(ROOT_ID, parent_id=None, prompt=initial_prompt, level=0)},
    }
    update.update(ctx.selection.initial_state())
    if isinstance(ctx.memory, RunLedger):
        update["memory_owner"] = run_owner()
        if config.memory_scope != "run":
            update["memory_runs"] = sorted(ctx.memory.finished_runs(update["memory_owner"]))
    examples = state.get("icl_examples") or ctx.icl_examples
    if examples is None:
        examples = seed_icl_examples_for([*queries, *validation_bank])
    update["icl_examples"] = [e.model_dump() for e in parse_icl_examples(examples, "icl_examples")]
    return update


def dispatch_evaluations(state: DRPOState) -> DRPOUpdate:
    """Join point after rewriting and aspect selection; the router fans evaluations out."""
    return {}


def _ranking_key(candidate: Candidate) -> tuple[float, int, str]:
    # Best mean reward first; ties go to the earlier level, then the lower id (deterministic).
    return (-mean(candidate["rewards"]), candidate["level"], candidate["id"])


def select_beam(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Rank this level's children by mean reward history and keep the best ``beam_size``."""
    config = ctx.config
    level = state["level"]
    batch_ids = [q["id"] for q in level_batch(state, level, config.queries_per_step)]
    candidates = state["candidates"]
    children = sorted((c for c in candidates.values() if c["level"] == level), key=lambda c: c["id"])
    search_records = [r for r in state.get("evaluations", []) if r.get("phase", "search") == "search"]
    results = by_candidate_and_query(search_records, level)
    level_records = [r for rs in results.values() for r in rs.values()]
    slope: float | None = None
    adjusted: dict[int, float] = {}
    if config.length_normalization:
        slope = length_slope(r for r in search_records if r["level"] <= level)
        adjusted = length_adjusted_rewards(level_records, slope)
    disagreements = [d for r in level_records if (d := r.get("disagreement")) is not None]

    updates: dict[str, Candidate] = {}
    pool: list[tuple[Candidate, float, float]] = []  # (child with rewards, level reward, spread)
    failures = [f for f in state.get("failures", []) if f.get("level") == level]
    for child in children:
        records = results.get(child["id"], {})
        failed = [r for r in records.values() if r.get("error")]
        if failed or len(records) < len(batch_ids):
            reason = (failed[0]["error"] or "failed") if failed else "missing evaluation"
            failures.append(
                {"step": "evaluate", "level": level, "error": reason, "candidate_id": child["id"]}
            )
            continue
        per_query = [adjusted[id(records[qid])] if adjusted else reward_of(records[qid]) for qid in batch_ids]
        level_reward = mean(per_query)
        parent = candidates.get(child["parent_id"] or "")
        updates[child["id"]] = {**child, "rewards": [*(parent["rewards"] if parent else []), level_reward]}
        pool.append((updates[child["id"]], level_reward, std(per_query)))

    if not pool:
        if level == 0:
            raise DRPOError(
                "the initial prompt could not be evaluated, so the search cannot start: "
                + "; ".join(describe_failure(f) for f in failures)
            )
        # Nothing at this level survived: the previous beam stays, and the failures are recorded.
        beam = list(state["beam"])
        kept = [candidates[cid] for cid in beam]
        level_rewards: list[float] = []
        spreads: list[float] = []
    else:
        ranked = sorted(pool, key=lambda entry: _ranking_key(entry[0]))[: config.beam_size]
        kept = [c for c, _, _ in ranked]
        beam = [c["id"] for c in kept]
        level_rewards = [r for _, r, _ in ranked]
        spreads = [s for _, _, s in ranked]
    summary: LevelSummary = {
        "level": level,
        "query_ids": batch_ids,
        "beam": beam,
        "beam_mean_rewards": [mean(c["rewards"]) for c in kept if c["rewards"]],
        "level_rewards": level_rewards,
        "level_reward_stds": spreads,
        "skipped": bool(children) and all(c.get("carried") for c in children),
        "depth_limit": state["depth_limit"],
        "failures": failures,
        "length_slope": slope,
        "jury_disagreement": sum(disagreements) / len(disagreements) if disagreements else None,
    }
    return {"candidates": updates, "beam": beam, "levels": [summary]}


def by_candidate_and_query(records: list[Evaluation], level: int) -> dict[str, dict[str, Evaluation]]:
    results: dict[str, dict[str, Evaluation]] = {}
    for record in records:
        if record["level"] == level:
            results.setdefault(record["candidate_id"], {})[record["query_id"]] = record
    return results


def next_level(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Advance one level: stop, or carry settled candidates and mark the others for rewriting."""
    level = state["level"] + 1
    stop = _stop_reason(ctx, state, level)
    if stop is not None:
        return {"stop_reason": stop, "stopped_by_budget": stop.startswith(BUDGET_STOPS)}

    candidates = state["candidates"]
    carried: dict[str, Candidate] = {}
    to_rewrite: list[str] = []
    for rank, parent_id in enumerate(state["beam"]):
        latest = latest_evaluations(state, parent_id)
        if latest and all(_is_settled(ctx, r) for r in latest):
            child_id = candidate_id(level, rank, 0)
            carried[child_id] = new_candidate(
                child_id,
                parent_id=parent_id,
                prompt=candidates[parent_id]["prompt"],
                level=level,
                carried=True,
                analysis="Carried forward unchanged: its answers already scored high.",
            )
        else:
            to_rewrite.append(parent_id)

    update: DRPOUpdate = {"level": level, "to_rewrite": to_rewrite, "candidates": carried}
    extensions = state.get("depth_extensions", 0)
    if carried and extensions < ctx.config.max_depth_increase:
        update["depth_limit"] = state["depth_limit"] + 1
        update["depth_extensions"] = extensions + 1
    return update


def _is_settled(ctx: SearchContext, record: Evaluation) -> bool:
    scores = [s["score"] for s in record["scores"]]
    return bool(scores) and (all(s == 5 for s in scores) or mean(scores) > ctx.config.skip_threshold)


def _stop_reason(ctx: SearchContext, state: DRPOState, level: int) -> str | None:
    if level > state["depth_limit"]:
        return f"reached depth {state['depth_limit']}"
    if not level_batch(state, level, ctx.config.queries_per_step):
        return f"used all {len(state['query_bank'])} training queries"
    return budget_stop(ctx.config, ctx.models, state.get("usage", {}))
