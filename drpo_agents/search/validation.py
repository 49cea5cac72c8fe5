"""End-of-run validation: re-rank the final beam and the initial prompt on held-out queries."""

from __future__ import annotations

from collections.abc import Sequence

from langgraph.types import Send

from drpo_agents.config import DRPOConfig
from drpo_agents.rewards import length_adjusted_rewards, mean, safety_score
from drpo_agents.search.beam import validation_level
from drpo_agents.search.context import SearchContext, std
from drpo_agents.search.records import ROOT_ID, Evaluation, ValidationRow, reward_of
from drpo_agents.search.state import DRPOState, DRPOUpdate
from drpo_agents.search.tasks import evaluation_send, retrieve_shots


def validation_candidates(state: DRPOState) -> list[str]:
    """The candidates the end-of-run validation scores: the final beam and the initial prompt."""
    return list(dict.fromkeys([*state["beam"], ROOT_ID]))


def validation_records(state: DRPOState) -> list[Evaluation]:
    """Every evaluation on the validation queries (end of run, or the acceptance gate's)."""
    return [r for r in state.get("evaluations", []) if r.get("phase") == "validation"]


def red_team_ids(state: DRPOState) -> list[str]:
    """The ids of the red-team validation queries (Safety is measured on them)."""
    return [q["id"] for q in state.get("validation_bank", []) if q.get("category") == "red_team"]


def current_length_slope(state: DRPOState) -> float:
    """The length slope of the last level that measured one (0 before any)."""
    slopes = [lvl.get("length_slope") for lvl in state.get("levels", [])]
    return next((s for s in reversed(slopes) if s is not None), 0.0)


def safe_enough(config: DRPOConfig, candidate: float | None, incumbent: float | None) -> bool:
    """Whether a red-team Safety of ``candidate`` keeps within tolerance of ``incumbent``'s."""
    if not config.red_team_validation_size or incumbent is None:
        return True
    return candidate is not None and candidate >= incumbent - config.safety_tolerance


def records_by_query(
    state: DRPOState, candidate_id: str, records: Sequence[Evaluation]
) -> dict[str, Evaluation]:
    """A candidate's successful records among ``records``, by query id."""
    # Candidates with the same prompt (a carried copy) share their validation answers.
    prompt = state["candidates"][candidate_id]["prompt"]
    same = {cid for cid, c in state["candidates"].items() if c["prompt"] == prompt}
    by_query: dict[str, Evaluation] = {}
    for record in records:
        if record["candidate_id"] in same and not record.get("error"):
            by_query.setdefault(record["query_id"], record)
    return by_query


def validation_row(
    state: DRPOState, candidate_id: str, records: Sequence[Evaluation], adjusted: dict[int, float]
) -> ValidationRow:
    """One candidate's validation result from its validation records (by prompt)."""
    by_query = records_by_query(state, candidate_id, records)
    query_ids = [q["id"] for q in state["validation_bank"]]
    rewards = [adjusted.get(id(by_query[q]), reward_of(by_query[q])) for q in query_ids if q in by_query]
    return {
        "candidate_id": candidate_id,
        "rewards": rewards,
        "mean": mean(rewards) if rewards else None,
        "std": std(rewards) if rewards else None,
        "failed": len(query_ids) - len(rewards),
        "search_rank": state["beam"].index(candidate_id) if candidate_id in state["beam"] else None,
        "safety": safety_score(by_query[q] for q in red_team_ids(state) if q in by_query),
    }


def dispatch_validation(state: DRPOState) -> DRPOUpdate:
    """Join point after the validation queries' aspect selection; the router fans the answers out."""
    return {}


def route_validation(ctx: SearchContext, state: DRPOState) -> list[Send]:
    """One ``validate`` task per (final-beam candidate or initial prompt, validation query)."""
    queries = state["validation_bank"]
    shots = retrieve_shots(ctx, state, queries)
    level = validation_level(state)
    return [
        evaluation_send(
            "validate", state, state["candidates"][cid], q, shots, phase="validation", level=level
        )
        for cid in validation_candidates(state)
        for q in queries
    ]


def rank_validation(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Re-rank the final beam and the initial prompt on the validation queries.

    A candidate with a failed validation answer cannot win (its mean would rest on fewer
    queries), nor can one whose Safety on the red-team queries fell below the initial
    prompt's by more than ``safety_tolerance``.
    """
    config = ctx.config
    level = validation_level(state)
    records = [r for r in validation_records(state) if r["level"] == level and not r.get("error")]
    adjusted: dict[int, float] = {}
    if config.length_normalization:
        adjusted = length_adjusted_rewards(records, current_length_slope(state))
    rows = [validation_row(state, cid, records, adjusted) for cid in validation_candidates(state)]
    baseline = next(r for r in rows if r["candidate_id"] == ROOT_ID)
    for row in rows:
        row["rejected_for_safety"] = not safe_enough(config, row["safety"], baseline["safety"])
    eligible = [
        r for r in rows if r["mean"] is not None and r["failed"] == 0 and not r["rejected_for_safety"]
    ]
    # Best validation mean wins; ties go to the search's own ranking.
    best = min(
        eligible,
        key=lambda r: (-(r["mean"] or 0.0), r["search_rank"] if r["search_rank"] is not None else len(rows)),
        default=None,
    )
    return {"validation": rows, "validated_best": best["candidate_id"] if best else ROOT_ID}
