"""The acceptance gate: validate the incumbent and the search's new best, then accept or reject."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from langgraph.types import Send

from drpo_agents.config import DRPOConfig
from drpo_agents.rewards import answer_length, bootstrap_ci, mean, safety_score
from drpo_agents.search.context import SearchContext
from drpo_agents.search.records import ROOT_ID, Evaluation, GateDecisionDict, ValidationRow, reward_of
from drpo_agents.search.state import DRPOState, DRPOUpdate
from drpo_agents.search.tasks import evaluation_send, retrieve_shots
from drpo_agents.search.validation import (
    current_length_slope,
    records_by_query,
    red_team_ids,
    safe_enough,
    validation_records,
    validation_row,
)


def challenger_of(state: DRPOState) -> str | None:
    """The search's new best, if it is a different prompt not yet judged by the gate."""
    if state["level"] == 0 or not state.get("beam"):
        return None
    challenger = state["beam"][0]
    incumbent = state.get("incumbent") or ROOT_ID
    candidates = state["candidates"]
    if candidates[challenger]["prompt"] == candidates[incumbent]["prompt"]:
        return None
    judged = [cid for d in state.get("gate_decisions", []) if (cid := d.get("challenger_id"))]
    if any(candidates[cid]["prompt"] == candidates[challenger]["prompt"] for cid in judged):
        return None  # this prompt was decided on already (e.g. a carried copy)
    return challenger


def _decided(state: DRPOState) -> bool:
    # A resumed run passes the gate's edges again after the level's decision was recorded.
    return any(d["level"] == state["level"] for d in state.get("gate_decisions", []))


def route_gate(ctx: SearchContext, state: DRPOState) -> list[Send] | str:
    """After ranking: validate the incumbent and the new best on held-out queries, or move on."""
    if _decided(state):
        return "next_level"
    records = validation_records(state)
    contenders = [state.get("incumbent") or ROOT_ID]
    challenger = challenger_of(state)
    if challenger is not None:
        contenders.append(challenger)
    answered = {cid: records_by_query(state, cid, records) for cid in contenders}
    missing = [
        (cid, q) for cid in contenders for q in state["validation_bank"] if q["id"] not in answered[cid]
    ]
    if not missing:
        return "gate"
    shots = retrieve_shots(ctx, state, [q for _, q in missing])
    return [
        evaluation_send(
            "validate", state, state["candidates"][cid], q, shots, phase="validation", level=state["level"]
        )
        for cid, q in missing
    ]


def gate(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Record the gate's decision for this level (see :func:`decide`) and move the incumbent."""
    if _decided(state):
        return {}
    incumbent = state.get("incumbent") or ROOT_ID
    challenger = challenger_of(state)
    records = validation_records(state)
    red_team = red_team_ids(state)
    initial = records_by_query(state, ROOT_ID, records)
    decision = decide(
        ctx.config,
        level=state["level"],
        incumbent_id=incumbent,
        challenger_id=challenger,
        incumbent=records_by_query(state, incumbent, records),
        challenger=records_by_query(state, challenger, records) if challenger is not None else {},
        query_ids=[q["id"] for q in state["validation_bank"]],
        red_team_ids=red_team,
        initial_safety=safety_score(initial[q] for q in red_team if q in initial),
        length_slope=current_length_slope(state) if ctx.config.length_normalization else None,
    )
    update: DRPOUpdate = {"gate_decisions": [decision]}
    if decision["accepted"] and challenger is not None:
        update["incumbent"] = challenger
    return update


def paired_gains(
    incumbent: Mapping[str, Evaluation],
    challenger: Mapping[str, Evaluation],
    query_ids: Sequence[str],
    length_slope: float | None,
) -> list[float]:
    """Per query, the challenger's reward minus the incumbent's (less the slope times the
    difference of their answers' log lengths, when rewards are length-normalised)."""
    slope = length_slope if length_slope is not None else 0.0
    return [
        reward_of(challenger[q])
        - reward_of(incumbent[q])
        - slope
        * (math.log(answer_length(challenger[q]["answer"])) - math.log(answer_length(incumbent[q]["answer"])))
        for q in query_ids
    ]


def decide(
    config: DRPOConfig,
    *,
    level: int,
    incumbent_id: str,
    challenger_id: str | None,
    incumbent: Mapping[str, Evaluation],
    challenger: Mapping[str, Evaluation],
    query_ids: Sequence[str],
    red_team_ids: Sequence[str],
    initial_safety: float | None,
    length_slope: float | None,
) -> GateDecisionDict:
    """Accept the challenger as the incumbent only on a clear validation gain.

    ``incumbent`` and ``challenger`` are each prompt's successful validation records by query
    id. The paired per-query reward differences (challenger - incumbent, length-adjusted when
    ``length_slope`` is given) are bootstrapped; the challenger is accepted when the interval's
    lower end exceeds ``gate_min_improvement``, it answered every validation query, and its
    red-team Safety did not fall more than ``safety_tolerance`` below the incumbent's (nor the
    initial prompt's: ``initial_safety``, so accepted prompts cannot each lose a little more).
    """
    incumbent_safety = safety_score(incumbent[q] for q in red_team_ids if q in incumbent)
    if challenger_id is None:
        return {
            "level": level,
            "incumbent_id": incumbent_id,
            "challenger_id": None,
            "incumbent_mean": mean([reward_of(r) for r in incumbent.values()]) if incumbent else None,
            "incumbent_safety": incumbent_safety,
            "accepted": False,
            "reason": "the initial prompt is the first incumbent" if level == 0 else "no new best prompt",
        }
    common = [q for q in query_ids if q in incumbent and q in challenger]
    differences = paired_gains(incumbent, challenger, common, length_slope)
    low, high = (
        bootstrap_ci(
            differences,
            resamples=config.bootstrap_samples,
            confidence=config.gate_confidence,
            seed=config.seed * 1_000_003 + level,
        )
        if differences
        else (0.0, 0.0)
    )
    challenger_safety = safety_score(challenger[q] for q in red_team_ids if q in challenger)
    mean_difference = mean(differences) if differences else None
    floor = max((v for v in (incumbent_safety, initial_safety) if v is not None), default=None)
    failed = len(query_ids) - len(challenger)
    interval = f"{config.gate_confidence:.0%} interval [{low:+.3f}, {high:+.3f}]"
    if failed:
        accepted, reason = False, f"validation failures: {failed} answer(s) failed"
    elif not safe_enough(config, challenger_safety, floor):
        accepted = False
        reason = (
            f"safety drop: red-team Safety {floor or 0:.2f} -> "
            f"{challenger_safety or 0:.2f} (tolerance {config.safety_tolerance})"
        )
    elif not common or low <= config.gate_min_improvement:
        accepted = False
        reason = f"no clear gain: {interval} does not exceed {config.gate_min_improvement:+.3f}"
    else:
        accepted, reason = True, f"clear gain: {mean_difference:+.3f}, {interval}"
    return {
        "level": level,
        "incumbent_id": incumbent_id,
        "challenger_id": challenger_id,
        "incumbent_mean": mean([reward_of(incumbent[q]) for q in common]) if common else None,
        "incumbent_safety": incumbent_safety,
        "challenger_mean": mean([reward_of(challenger[q]) for q in common]) if common else None,
        "challenger_safety": challenger_safety,
        "queries": len(common),
        "mean_difference": mean_difference,
        "ci_low": low,
        "ci_high": high,
        "length_slope": length_slope,
        "accepted": accepted,
        "reason": reason,
    }


def gate_validation_rows(state: DRPOState) -> list[ValidationRow]:
    """The validation results of every prompt the acceptance gate judged."""
    records = validation_records(state)
    decisions = state.get("gate_decisions", [])
    judged = [
        cid for d in decisions for cid in (d["incumbent_id"], d.get("challenger_id")) if cid is not None
    ]
    unsafe = {d["challenger_id"] for d in decisions if str(d.get("reason", "")).startswith("safety drop")}
    return [
        {**validation_row(state, cid, records, {}), "rejected_for_safety": cid in unsafe}
        for cid in dict.fromkeys(judged)
    ]
