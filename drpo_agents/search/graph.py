"""The DRPO beam search over system prompts, as a LangGraph ``StateGraph``.

One level of the search (the reference DRPO algorithm):

1. every beam candidate whose last answers scored high (all 5s, or a mean above
   ``skip_threshold``) gets one *carried* child with the same prompt; the others are
   rewritten into ``n_actions`` children from their own last critique (``rewrite``), while
   the judge selects aspects for the level's training queries (``select_aspects``), in parallel;
2. every child answers the level's queries and is judged (``evaluate``, one task per child
   and query, fanned out with ``Send``);
3. children are ranked by the mean of their reward history (inherited rewards included)
   and the best ``beam_size`` form the next beam (``select_beam``). A level in which any
   candidate was carried extends the depth by one, at most ``max_depth_increase`` times.

Level 0 only evaluates the initial prompt. Every candidate is recorded with its parent, so
the whole search tree ends up in the artifact.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send, interrupt

from drpo_agents.agents import Judge, PromptRewriter, Responder, RewriteCase
from drpo_agents.artifact import (
    AlignmentArtifact,
    CandidateRecord,
    EvaluationRecord,
    GateDecision,
    ICLOptimizationRecord,
    LevelRecord,
    TokenUsage,
    ValidationRecord,
)
from drpo_agents.aspects import AspectCatalog
from drpo_agents.cache import cached_copies
from drpo_agents.calls import CallPlan, ModelCall, RoleLimiter, call_config, plan_node
from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import load_seed_icl_examples, normalize_queries
from drpo_agents.errors import ConfigError, DRPOError, error_text, recoverable_errors
from drpo_agents.memory import Critique, CritiqueMemory
from drpo_agents.models.registry import (
    default_rewriter,
    model_identity,
    model_notes,
    resolve_model,
    with_output_limit,
)
from drpo_agents.retrieval import EmbeddingsLike, ICLRetriever, InMemoryICLRetriever, fit_icl_budget
from drpo_agents.rewards import (
    SAFETY_ASPECT,
    answer_length,
    bootstrap_ci,
    length_adjusted_rewards,
    length_slope,
    mean,
    safety_score,
)
from drpo_agents.schemas import AnswerEvaluation, AspectSelection, ICLExample
from drpo_agents.search.state import DRPOInput, DRPOOutput, DRPOState
from drpo_agents.structured import METHOD_STEPS, StructuredMethods
from drpo_agents.usage import UsageByRole, merge_usage, usage_of

ROOT_ID = "c0"
# Aspects used when the judge cannot select any for a query; the record says so.
FALLBACK_ASPECTS = ("Helpfulness", "Clarity", "Factuality")


def _std(values: Sequence[float]) -> float:
    """Population standard deviation (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    center = mean(values)
    return float((sum((v - center) ** 2 for v in values) / len(values)) ** 0.5)


def _level_batch(state: DRPOState, level: int, per_step: int) -> list[dict[str, str]]:
    return state["query_bank"][level * per_step : (level + 1) * per_step]


def _ranking_key(candidate: dict[str, Any]) -> tuple[float, int, str]:
    # Best mean reward first; ties go to the earlier level, then the lower id (deterministic).
    return (-mean(candidate["rewards"]), candidate["level"], candidate["id"])


class _DRPOSearch:
    """The agents plus the config; its methods are the graph's nodes and routers."""

    def __init__(
        self,
        *,
        responder: Responder,
        judge: Judge,
        rewriter: PromptRewriter,
        config: DRPOConfig,
        icl_examples: list[ICLExample],
        models: dict[str, str],
        notes: list[str],
        memory: CritiqueMemory | None,
        retriever_factory: Callable[[list[ICLExample]], ICLRetriever],
    ) -> None:
        self.memory = memory if config.critique_memory else None
        self.retriever_factory = retriever_factory
        self._retrievers: dict[str, ICLRetriever] = {}
        self.responder = responder
        self.judge = judge
        self.rewriter = rewriter
        self.config = config
        self.icl_examples = icl_examples
        self.models = models
        self.notes = notes
        self.methods = judge.methods if judge.methods is not None else StructuredMethods()

    # -- bookkeeping nodes (no model calls) ---------------------------------------------------

    def prepare(self, state: DRPOState) -> dict[str, Any]:
        """Validate the training queries, fix their order (seeded) and plant the initial prompt."""
        queries = normalize_queries(state.get("queries") or [])
        held_out = self.config.validation_size
        red_team_size = self.config.red_team_validation_size
        needed = 2 * self.config.queries_per_step + held_out + red_team_size
        if len(queries) < needed:
            raise DRPOError(
                f"need at least {needed} training queries (one batch for the initial prompt, one per level"
                f"{f', and {held_out + red_team_size} for validation' if held_out else ''}); got {len(queries)}"
            )
        if self.config.shuffle_queries:
            random.Random(self.config.seed).shuffle(queries)
        red_team_bank: list[dict[str, str]] = []
        if red_team_size:
            red_team = [q for q in queries if q.get("category") == "red_team"]
            if len(red_team) < red_team_size:
                raise DRPOError(
                    f"red_team_validation_size={red_team_size} needs that many training queries with "
                    f"category 'red_team'; got {len(red_team)}"
                )
            red_team_bank = red_team[len(red_team) - red_team_size :]
            taken = {q["id"] for q in red_team_bank}
            queries = [q for q in queries if q["id"] not in taken]
        validation_bank = (queries[len(queries) - held_out :] if held_out else []) + red_team_bank
        queries = queries[: len(queries) - held_out]
        initial_prompt = state.get("initial_prompt") or self.config.initial_prompt
        root: dict[str, Any] = {
            "id": ROOT_ID,
            "parent_id": None,
            "prompt": initial_prompt,
            "level": 0,
            "rewards": [],
            "carried": False,
            "analysis": "",
            "thought": "",
        }
        return {
            "run_id": state.get("run_id") or uuid.uuid4().hex[:12],
            "initial_prompt": initial_prompt,
            "query_bank": queries,
            "validation_bank": validation_bank,
            "phase": "search",
            "level": 0,
            "depth_limit": self.config.depth,
            "depth_extensions": 0,
            "beam": [],
            "to_rewrite": [],
            "candidates": {ROOT_ID: root},
            **({"incumbent": ROOT_ID} if self.config.acceptance_gate else {}),
            "icl_examples": [
                ICLExample.model_validate(e).model_dump()
                for e in (state.get("icl_examples") or self.icl_examples)
            ],
        }

    def dispatch_evaluations(self, state: DRPOState) -> dict[str, Any]:
        """Join point after rewriting and aspect selection; the router fans evaluations out."""
        return {}

    def select_beam(self, state: DRPOState) -> dict[str, Any]:
        """Rank this level's children by mean reward history and keep the best ``beam_size``."""
        if state.get("phase") == "validation":
            return self._rank_on_validation(state)
        level = state["level"]
        batch_ids = [q["id"] for q in _level_batch(state, level, self.config.queries_per_step)]
        candidates = state["candidates"]
        children = sorted((c for c in candidates.values() if c["level"] == level), key=lambda c: c["id"])
        results: dict[str, dict[str, dict[str, Any]]] = {}
        search_records = [r for r in state.get("evaluations", []) if r.get("phase", "search") == "search"]
        for record in search_records:
            if record["level"] == level:
                results.setdefault(record["candidate_id"], {})[record["query_id"]] = record
        level_records = [r for rs in results.values() for r in rs.values()]
        slope: float | None = None
        adjusted: dict[int, float] = {}
        if self.config.length_normalization:
            slope = length_slope(r for r in search_records if r["level"] <= level)
            adjusted = length_adjusted_rewards(level_records, slope)
        disagreements = [r["disagreement"] for r in level_records if r.get("disagreement") is not None]

        updates: dict[str, dict[str, Any]] = {}
        pool: list[dict[str, Any]] = []
        failures = [
            f"{f['step']} {f.get('candidate_id') or f.get('query_id')}: {f['error']}"
            for f in state.get("failures", [])
            if f.get("level") == level
        ]
        for child in children:
            records = results.get(child["id"], {})
            failed = [r for r in records.values() if r.get("error")]
            if failed or len(records) < len(batch_ids):
                reason = failed[0]["error"] if failed else "missing evaluation"
                failures.append(f"evaluate {child['id']}: {reason}")
                continue
            per_query = [
                adjusted[id(records[qid])] if adjusted else records[qid]["reward"] for qid in batch_ids
            ]
            level_reward = mean(per_query)
            parent = candidates.get(child["parent_id"] or "")
            rewards = [*(parent["rewards"] if parent else []), level_reward]
            updates[child["id"]] = {"rewards": rewards}
            pool.append(
                {**child, "rewards": rewards, "level_reward": level_reward, "spread": _std(per_query)}
            )

        if not pool:
            if level == 0:
                raise DRPOError(
                    "the initial prompt could not be evaluated, so the search cannot start: "
                    + "; ".join(failures)
                )
            # Nothing at this level survived: the previous beam stays, and the failures are recorded.
            beam = list(state["beam"])
            kept = [candidates[cid] for cid in beam]
            level_rewards: list[float] = []
            spreads: list[float] = []
        else:
            kept = sorted(pool, key=_ranking_key)[: self.config.beam_size]
            beam = [c["id"] for c in kept]
            level_rewards = [c["level_reward"] for c in kept]
            spreads = [c["spread"] for c in kept]
        level_record = {
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
        if self.memory is not None:
            # One batched, idempotent write per level: rewrites from the next level on see these.
            self.memory.remember(self._critiques(state["run_id"], level_records))
        return {"candidates": updates, "beam": beam, "levels": [level_record]}

    def next_level(self, state: DRPOState) -> dict[str, Any]:
        """Advance one level: stop, or carry settled candidates and mark the others for rewriting."""
        if state.get("phase") == "validation":
            return {"stop_reason": state.get("pending_stop", "finished")}
        level = state["level"] + 1
        stop = self._stop_reason(state, level)
        if stop is not None:
            budget = {"stopped_by_budget": stop.startswith(("token budget", "cost budget"))}
            if state.get("validation_bank") and not self.config.acceptance_gate:
                # Re-rank the final beam (and the initial prompt, as the baseline) on held-out queries.
                return {
                    "phase": "validation",
                    "pending_stop": stop,
                    "level": level,
                    "to_rewrite": [],
                    **budget,
                }
            return {"stop_reason": stop, **budget}

        candidates = state["candidates"]
        carried: dict[str, dict[str, Any]] = {}
        to_rewrite: list[str] = []
        for rank, parent_id in enumerate(state["beam"]):
            latest = self._latest_evaluations(state, parent_id)
            if latest and all(self._is_settled(r) for r in latest):
                parent = candidates[parent_id]
                child_id = f"c{level}-{rank}-0"
                carried[child_id] = {
                    "id": child_id,
                    "parent_id": parent_id,
                    "prompt": parent["prompt"],
                    "level": level,
                    "rewards": [],
                    "carried": True,
                    "analysis": "Carried forward unchanged: its answers already scored high.",
                    "thought": "",
                }
            else:
                to_rewrite.append(parent_id)

        update: dict[str, Any] = {"level": level, "to_rewrite": to_rewrite, "candidates": carried}
        extensions = state.get("depth_extensions", 0)
        if carried and extensions < self.config.max_depth_increase:
            update["depth_limit"] = state["depth_limit"] + 1
            update["depth_extensions"] = extensions + 1
        return update

    def _stop_reason(self, state: DRPOState, level: int) -> str | None:
        if level > state["depth_limit"]:
            return f"reached depth {state['depth_limit']}"
        if not _level_batch(state, level, self.config.queries_per_step):
            return f"used all {len(state['query_bank'])} training queries"
        tokens, cost = self.spent(state.get("usage", {}))
        if self.config.max_tokens_budget is not None and tokens >= self.config.max_tokens_budget:
            return f"token budget reached ({tokens:,} of {self.config.max_tokens_budget:,})"
        if self.config.max_cost is not None and cost is not None and cost >= self.config.max_cost:
            return f"cost budget reached ({cost:.4f} of {self.config.max_cost})"
        return None

    def spent(self, usage: dict[str, dict[str, int]]) -> tuple[int, float | None]:
        """Tokens spent so far, and their cost if every role that spent any has a price."""
        tokens = sum(u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in usage.values())
        cost = 0.0
        for role, counts in usage.items():
            price = self.config.price_of(self.models.get(role, role))
            if price is None:
                return tokens, None
            cost += (
                counts.get("input_tokens", 0) * price.input_per_million
                + counts.get("output_tokens", 0) * price.output_per_million
            ) / 1_000_000
        return tokens, cost

    def _validation_candidates(self, state: DRPOState) -> list[str]:
        return list(dict.fromkeys([*state["beam"], ROOT_ID]))

    def _rank_on_validation(self, state: DRPOState) -> dict[str, Any]:
        """Re-rank the final beam and the initial prompt on the validation queries.

        A candidate with a failed validation answer cannot win (its mean would rest on fewer
        queries), nor can one whose Safety on the red-team queries fell below the initial
        prompt's by more than ``safety_tolerance``.
        """
        level = state["level"]
        records = [
            r
            for r in state.get("evaluations", [])
            if r["level"] == level and r.get("phase") == "validation" and not r.get("error")
        ]
        adjusted: dict[int, float] = {}
        if self.config.length_normalization:
            adjusted = length_adjusted_rewards(records, self._current_length_slope(state))
        rows = [
            self._validation_row(state, cid, records, adjusted) for cid in self._validation_candidates(state)
        ]
        baseline = next(r for r in rows if r["candidate_id"] == ROOT_ID)
        for row in rows:
            row["rejected_for_safety"] = not self._safe_enough(row["safety"], baseline["safety"])
        eligible = [
            r for r in rows if r["mean"] is not None and r["failed"] == 0 and not r["rejected_for_safety"]
        ]
        # Best validation mean wins; ties go to the search's own ranking.
        best = min(
            eligible,
            key=lambda r: (-r["mean"], r["search_rank"] if r["search_rank"] is not None else len(rows)),
            default=None,
        )
        return {"validation": rows, "validated_best": best["candidate_id"] if best else ROOT_ID}

    def _validation_row(
        self,
        state: DRPOState,
        candidate_id: str,
        records: Sequence[dict[str, Any]],
        adjusted: dict[int, float],
    ) -> dict[str, Any]:
        """One candidate's validation result from its validation records (by prompt)."""
        by_query = self._records_by_query(state, candidate_id, records)
        query_ids = [q["id"] for q in state["validation_bank"]]
        rewards = [adjusted.get(id(by_query[q]), by_query[q]["reward"]) for q in query_ids if q in by_query]
        return {
            "candidate_id": candidate_id,
            "rewards": rewards,
            "mean": mean(rewards) if rewards else None,
            "std": _std(rewards) if rewards else None,
            "failed": len(query_ids) - len(rewards),
            "search_rank": state["beam"].index(candidate_id) if candidate_id in state["beam"] else None,
            "safety": safety_score(by_query[q] for q in self._red_team_ids(state) if q in by_query),
        }

    @staticmethod
    def _records_by_query(
        state: DRPOState, candidate_id: str, records: Sequence[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        # Candidates with the same prompt (a carried copy) share their validation answers.
        prompt = state["candidates"][candidate_id]["prompt"]
        same = {cid for cid, c in state["candidates"].items() if c["prompt"] == prompt}
        by_query: dict[str, dict[str, Any]] = {}
        for record in records:
            if record["candidate_id"] in same and not record.get("error"):
                by_query.setdefault(record["query_id"], record)
        return by_query

    @staticmethod
    def _red_team_ids(state: DRPOState) -> list[str]:
        return [q["id"] for q in state.get("validation_bank", []) if q.get("category") == "red_team"]

    def _safe_enough(self, candidate: float | None, incumbent: float | None) -> bool:
        if not self.config.red_team_validation_size or incumbent is None:
            return True
        return candidate is not None and candidate >= incumbent - self.config.safety_tolerance

    def _safety_floor(self, state: DRPOState, decision: dict[str, Any]) -> float | None:
        """The Safety a challenger must keep: the incumbent's, and never less than the initial
        prompt's, so accepted prompts cannot each lose a little more (no drift)."""
        mine = self._records_by_query(state, ROOT_ID, self._validation_records(state))
        initial = safety_score(mine[q] for q in self._red_team_ids(state) if q in mine)
        values = [v for v in (decision.get("incumbent_safety"), initial) if v is not None]
        return max(values) if values else None

    def _current_length_slope(self, state: DRPOState) -> float:
        slopes = [lvl.get("length_slope") for lvl in state.get("levels", [])]
        return next((s for s in reversed(slopes) if s is not None), 0.0)

    # -- acceptance gate ------------------------------------------------------------------------

    def _gate_challenger(self, state: DRPOState) -> str | None:
        """The search's new best, if it is a different prompt not yet judged by the gate."""
        if state["level"] == 0 or not state.get("beam"):
            return None
        challenger = state["beam"][0]
        incumbent = state.get("incumbent") or ROOT_ID
        candidates = state["candidates"]
        if candidates[challenger]["prompt"] == candidates[incumbent]["prompt"]:
            return None
        judged = [d["challenger_id"] for d in state.get("gate_decisions", []) if d.get("challenger_id")]
        if any(candidates[cid]["prompt"] == candidates[challenger]["prompt"] for cid in judged):
            return None  # this prompt was decided on already (e.g. a carried copy)
        return challenger

    def _validation_records(self, state: DRPOState) -> list[dict[str, Any]]:
        return [r for r in state.get("evaluations", []) if r.get("phase") == "validation"]

    def route_gate(self, state: DRPOState) -> list[Send] | str:
        """After ranking: validate the incumbent and the new best on held-out queries, or move on."""
        if not self.config.acceptance_gate or state.get("phase") == "validation":
            return "next_level"
        level = state["level"]
        if any(d["level"] == level for d in state.get("gate_decisions", [])):
            return "next_level"  # decided already (a resumed run passes here again)
        records = self._validation_records(state)
        contenders = [state.get("incumbent") or ROOT_ID]
        challenger = self._gate_challenger(state)
        if challenger is not None:
            contenders.append(challenger)
        answered = {cid: self._records_by_query(state, cid, records) for cid in contenders}
        missing = [
            (cid, q) for cid in contenders for q in state["validation_bank"] if q["id"] not in answered[cid]
        ]
        if not missing:
            return "gate"
        shots = self._shots(state, [q for _, q in missing])
        return [
            self._evaluation_send("validate", state, state["candidates"][cid], q, shots, phase="validation")
            for cid, q in missing
        ]

    def gate(self, state: DRPOState) -> dict[str, Any]:
        """Accept the search's new best as the incumbent only on a clear validation gain.

        The paired per-query reward differences (challenger - incumbent, length-adjusted when
        ``length_normalization`` is on) are bootstrapped; the challenger is accepted when the
        interval's lower end exceeds ``gate_min_improvement`` and its red-team Safety did not
        fall more than ``safety_tolerance`` below the incumbent's. Every decision is recorded.
        """
        level = state["level"]
        if any(d["level"] == level for d in state.get("gate_decisions", [])):
            return {}
        incumbent = state.get("incumbent") or ROOT_ID
        challenger = self._gate_challenger(state)
        records = self._validation_records(state)
        mine = self._records_by_query(state, incumbent, records)
        red_team = self._red_team_ids(state)
        decision: dict[str, Any] = {
            "level": level,
            "incumbent_id": incumbent,
            "challenger_id": challenger,
            "incumbent_mean": mean([r["reward"] for r in mine.values()]) if mine else None,
            "incumbent_safety": safety_score(mine[q] for q in red_team if q in mine),
        }
        if challenger is None:
            reason = "the initial prompt is the first incumbent" if level == 0 else "no new best prompt"
            return {"gate_decisions": [{**decision, "accepted": False, "reason": reason}]}
        theirs = self._records_by_query(state, challenger, records)
        common = [q["id"] for q in state["validation_bank"] if q["id"] in mine and q["id"] in theirs]
        slope = self._current_length_slope(state) if self.config.length_normalization else 0.0
        differences = [
            theirs[q]["reward"]
            - mine[q]["reward"]
            - slope
            * (math.log(answer_length(theirs[q]["answer"])) - math.log(answer_length(mine[q]["answer"])))
            for q in common
        ]
        low, high = (
            bootstrap_ci(
                differences,
                resamples=self.config.bootstrap_samples,
                confidence=self.config.gate_confidence,
                seed=self.config.seed * 1_000_003 + level,
            )
            if differences
            else (0.0, 0.0)
        )
        decision.update(
            {
                "challenger_mean": mean([theirs[q]["reward"] for q in common]) if common else None,
                "incumbent_mean": mean([mine[q]["reward"] for q in common]) if common else None,
                "challenger_safety": safety_score(theirs[q] for q in red_team if q in theirs),
                "queries": len(common),
                "mean_difference": mean(differences) if differences else None,
                "ci_low": low,
                "ci_high": high,
                "length_slope": slope if self.config.length_normalization else None,
            }
        )
        failed = len(state["validation_bank"]) - len(theirs)
        if failed:
            accepted, reason = False, f"validation failures: {failed} answer(s) failed"
        elif not self._safe_enough(
            decision["challenger_safety"], floor := self._safety_floor(state, decision)
        ):
            accepted = False
            reason = (
                f"safety drop: red-team Safety {floor or 0:.2f} -> "
                f"{decision['challenger_safety'] or 0:.2f} (tolerance {self.config.safety_tolerance})"
            )
        elif not common or low <= self.config.gate_min_improvement:
            accepted = False
            reason = (
                f"no clear gain: {self.config.gate_confidence:.0%} interval [{low:+.3f}, {high:+.3f}] "
                f"does not exceed {self.config.gate_min_improvement:+.3f}"
            )
        else:
            accepted = True
            reason = (
                f"clear gain: {decision['mean_difference']:+.3f}, "
                f"{self.config.gate_confidence:.0%} interval [{low:+.3f}, {high:+.3f}]"
            )
        update: dict[str, Any] = {"gate_decisions": [{**decision, "accepted": accepted, "reason": reason}]}
        if accepted:
            update["incumbent"] = challenger
        return update

    def review(self, state: DRPOState) -> dict[str, Any]:
        """Pause (LangGraph ``interrupt``) for a person to approve, edit or reject the final prompt.

        Resume with ``Command(resume={"action": "approve"})``, ``{"action": "edit", "prompt": ...}``
        or ``{"action": "reject"}`` (the initial prompt is kept).
        """
        best_id = self._chosen(state)
        best = state["candidates"][best_id]
        request: dict[str, Any] = {
            "kind": "drpo_review",
            "run_id": state["run_id"],
            "candidate_id": best_id,
            "prompt": best["prompt"],
            "initial_prompt": state["candidates"][ROOT_ID]["prompt"],
            "rewards": best["rewards"],
            "validation": state.get("validation", []),
            "actions": ["approve", "edit", "reject"],
        }
        while True:  # an invalid answer is asked again (each interrupt takes its own resume value)
            decision = interrupt(request)
            action = decision.get("action") if isinstance(decision, dict) else decision
            if action == "approve":
                return {"review": {"action": "approve", "candidate_id": best_id}}
            if action == "reject":
                return {"review": {"action": "reject", "candidate_id": ROOT_ID, "rejected": best_id}}
            edited = decision.get("prompt") if isinstance(decision, dict) else None
            if action == "edit" and isinstance(edited, str) and edited.strip():
                reviewed = {
                    **best,
                    "id": f"{best_id}-reviewed",
                    "parent_id": best_id,
                    "prompt": edited.strip(),
                    "carried": False,
                    "analysis": "Edited by a reviewer.",
                    "thought": "",
                    "lessons": [],
                }
                return {
                    "candidates": {reviewed["id"]: reviewed},
                    "review": {"action": "edit", "candidate_id": reviewed["id"], "edited": best_id},
                }
            request = {
                **request,
                "error": f"invalid review decision {decision!r}: answer {{'action': 'approve'}}, "
                "{'action': 'reject'} or {'action': 'edit', 'prompt': '...'}",
            }

    def _chosen(self, state: DRPOState) -> str:
        """The prompt the run returns: the gate's incumbent, else the validation's or the search's best."""
        if self.config.acceptance_gate:
            return state.get("incumbent") or ROOT_ID
        return state.get("validated_best") or state["beam"][0]

    def _gate_validation_rows(self, state: DRPOState) -> list[dict[str, Any]]:
        records = self._validation_records(state)
        judged = [
            cid
            for d in state.get("gate_decisions", [])
            for cid in (d["incumbent_id"], d.get("challenger_id"))
            if cid is not None
        ]
        unsafe = {
            d["challenger_id"]
            for d in state.get("gate_decisions", [])
            if str(d.get("reason", "")).startswith("safety drop")
        }
        return [
            {**self._validation_row(state, cid, records, {}), "rejected_for_safety": cid in unsafe}
            for cid in dict.fromkeys(judged)
        ]

    def finalize(self, state: DRPOState) -> dict[str, Any]:
        """Build the artifact from the final beam and the recorded search tree."""
        best_id = state.get("review", {}).get("candidate_id") or self._chosen(state)
        candidates = sorted(state["candidates"].values(), key=lambda c: (c["level"], c["id"]))
        evaluations = sorted(
            state.get("evaluations", []), key=lambda r: (r["level"], r["candidate_id"], r["query_id"])
        )
        artifact = AlignmentArtifact(
            run_id=state["run_id"],
            system_prompt=state["candidates"][best_id]["prompt"],
            icl_examples=self._examples(state),
            icl_optimization=[ICLOptimizationRecord.model_validate(r) for r in state.get("icl_records", [])],
            icl_k=self.config.icl_k,
            best_candidate_id=best_id,
            candidates=[CandidateRecord.model_validate(c) for c in candidates],
            evaluations=[EvaluationRecord.model_validate(e) for e in evaluations],
            levels=[
                LevelRecord.model_validate(r)
                for r in sorted(state.get("levels", []), key=lambda r: r["level"])
            ],
            config=self.config.to_json_dict(),
            models=self.models,
            usage={role: TokenUsage.model_validate(u) for role, u in state.get("usage", {}).items()},
            cost=self.spent(state.get("usage", {}))[1],
            validation=[
                ValidationRecord.model_validate(r)
                for r in (
                    self._gate_validation_rows(state)
                    if self.config.acceptance_gate
                    else state.get("validation", [])
                )
            ],
            gate_decisions=[GateDecision.model_validate(d) for d in state.get("gate_decisions", [])],
            search_best_candidate_id=state["beam"][0],
            review=state.get("review"),
            structured_output_methods=dict(state.get("structured_methods", {})),
            notes=[*self.notes, f"stopped: {state.get('stop_reason', 'finished')}"],
        )
        return {"artifact": artifact.model_dump(mode="json")}

    # -- routers -----------------------------------------------------------------------------

    def route_level_work(self, state: DRPOState) -> list[Send] | str:
        """Fan out this level's rewrites and aspect selections, or finish."""
        if state.get("stop_reason"):
            return "review" if self.config.review else "finalize"
        self._recall_methods(state)
        sends = [
            Send("rewrite", self._rewrite_payload(state, parent_id, state["beam"].index(parent_id)))
            for parent_id in state.get("to_rewrite", [])
        ]
        cache = state.get("aspect_cache", {})
        queries = list(self._batch(state))
        if self.config.acceptance_gate and state["level"] == 0:
            queries += state["validation_bank"]  # the gate validates from level 0 on
        validation_ids = {q["id"] for q in state.get("validation_bank", [])}
        sends += [
            Send(
                "select_aspects",
                {
                    "run_id": state["run_id"],
                    "query_id": q["id"],
                    "query": q["query"],
                    "level": state["level"],
                    # The safety constraint needs a Safety score on every red-team validation query.
                    "required_aspects": [SAFETY_ASPECT]
                    if q["id"] in validation_ids and q.get("category") == "red_team"
                    else [],
                },
            )
            for q in queries
            if q["id"] not in cache
        ]
        return sends or "dispatch_evaluations"

    def route_evaluations(self, state: DRPOState) -> list[Send] | str:
        """One ``evaluate`` task per (new candidate, training query) of this level."""
        level = state["level"]
        if state.get("phase") == "validation":
            children = [state["candidates"][cid] for cid in self._validation_candidates(state)]
        else:
            children = sorted(
                (c for c in state["candidates"].values() if c["level"] == level), key=lambda c: c["id"]
            )
        batch = self._batch(state)
        shots = self._shots(state, batch)
        phase = state.get("phase", "search")
        sends = [
            self._evaluation_send("evaluate", state, child, q, shots, phase=phase)
            for child in children
            for q in batch
        ]
        return sends or "select_beam"

    def _shots(self, state: DRPOState, queries: Sequence[dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
        # Retrieved in the router, once per query, and carried in the task: a resumed process
        # restores pending tasks without re-running the router.
        retriever = self._retriever(self._examples(state))
        budget = self.config.max_icl_tokens
        return {
            q["id"]: [
                e.model_dump()
                for e in fit_icl_budget(retriever.retrieve(q["query"], self.config.icl_k), budget)
            ]
            for q in queries
        }

    @staticmethod
    def _evaluation_send(
        node: str,
        state: DRPOState,
        candidate: dict[str, Any],
        query: dict[str, str],
        shots: dict[str, list[dict[str, Any]]],
        *,
        phase: str,
    ) -> Send:
        return Send(
            node,
            {
                "run_id": state["run_id"],
                "candidate_id": candidate["id"],
                "prompt": candidate["prompt"],
                "level": state["level"],
                "phase": phase,
                "query_id": query["id"],
                "query": query["query"],
                "aspects": state["aspect_cache"][query["id"]]["selected_aspects"],
                "icl": shots[query["id"]],
            },
        )

    # -- model-calling nodes (call plans: the same code runs under invoke and ainvoke) ---------

    def plan_select_aspects(self, task: dict[str, Any], config: RunnableConfig) -> CallPlan[dict[str, Any]]:
        """Ask the judge which aspects matter for one training query."""
        try:
            result = yield from self.judge.plan_select_aspects(
                task["query"], config=_tagged(config, task, "query_id", "level")
            )
        except recoverable_errors() as exc:
            fallback = AspectSelection(
                reasoning=f"Fallback aspects: aspect selection failed ({error_text(exc)}).",
                selected_aspects=list(FALLBACK_ASPECTS),
            )
            return {
                "usage": usage_of("judge", getattr(exc, "messages", [])),
                "structured_methods": self._methods_used("judge"),
                "aspect_cache": {task["query_id"]: {**fallback.model_dump(), "fallback": True}},
                "failures": [
                    {
                        "step": "select_aspects",
                        "level": task["level"],
                        "query_id": task["query_id"],
                        "error": error_text(exc),
                    }
                ],
            }
        selection = result.value.model_dump()
        missing = [a for a in task.get("required_aspects", []) if a not in selection["selected_aspects"]]
        if missing:
            selection["selected_aspects"] = [*selection["selected_aspects"][: 5 - len(missing)], *missing]
            selection["required"] = missing
        return {
            "aspect_cache": {task["query_id"]: selection},
            "usage": usage_of("judge", result.messages),
            "structured_methods": {"judge": result.method},
        }

    def plan_rewrite(self, task: dict[str, Any], config: RunnableConfig) -> CallPlan[dict[str, Any]]:
        """Ask the rewriter for ``n_actions`` children of one beam candidate."""
        cases = [
            RewriteCase(query=c["query"], answer=c["answer"], evaluation=AnswerEvaluation(scores=c["scores"]))
            for c in task["cases"]
        ]
        node_config = _tagged(config, task, "parent_id", "level")
        lessons: list[str] = []
        if self.memory is not None and self.config.memory_k:
            recall_config = call_config(node_config, "memory", "recall_critiques")
            recalled = yield ModelCall(self._recall_runnable, task, recall_config)
            lessons = [c.as_lesson() for c in recalled]
        try:
            result = yield from self.rewriter.plan_propose(
                task["prompt"],
                cases,
                n=self.config.n_actions,
                previous_prompts=task["previous_prompts"],
                lessons=lessons,
                config=node_config,
            )
        except recoverable_errors() as exc:
            return {
                "usage": usage_of("rewriter", getattr(exc, "messages", [])),
                "structured_methods": self._methods_used("rewriter"),
                "failures": [
                    {
                        "step": "rewrite",
                        "level": task["level"],
                        "candidate_id": task["parent_id"],
                        "error": error_text(exc),
                    }
                ],
            }
        children = {}
        for index, proposal in enumerate(result.value.proposals):
            child_id = f"c{task['level']}-{task['rank']}-{index}"
            children[child_id] = {
                "id": child_id,
                "parent_id": task["parent_id"],
                "prompt": proposal.new_prompt,
                "level": task["level"],
                "rewards": [],
                "carried": False,
                "analysis": proposal.analysis,
                "thought": proposal.thought,
                "lessons": lessons,
            }
        dropped = [
            {"step": "rewrite", "level": task["level"], "candidate_id": task["parent_id"], "error": reason}
            for reason in result.value.rejected
        ]
        return {
            "candidates": children,
            "usage": usage_of("rewriter", result.messages),
            "failures": dropped,
            "structured_methods": {"rewriter": result.method},
        }

    def plan_evaluate(self, task: dict[str, Any], config: RunnableConfig) -> CallPlan[dict[str, Any]]:
        """Answer one training query under one candidate prompt and judge the answer."""
        record: dict[str, Any] = {
            "candidate_id": task["candidate_id"],
            "level": task["level"],
            "query_id": task["query_id"],
            "query": task["query"],
            "aspects": list(task["aspects"]),
            "answer": "",
            "scores": [],
            "reward": None,
            "error": None,
            "phase": task.get("phase", "search"),
        }
        call_config = _tagged(config, task, "candidate_id", "query_id", "level")
        usage: UsageByRole = {}
        try:
            response = yield from self.responder.plan_respond(
                task["prompt"],
                task["query"],
                examples=[ICLExample.model_validate(e) for e in task.get("icl", [])],
                config=call_config,
            )
            record["answer"] = response.answer
            usage.update(usage_of("responder", response.messages))
            verdict = yield from self.judge.plan_verdict(
                task["query"], response.answer, task["aspects"], config=call_config
            )
        except recoverable_errors() as exc:
            record["error"] = error_text(exc)
            # A judge reply that was finally rejected was still paid for.
            role = "judge" if record["answer"] else "responder"
            usage = merge_usage(usage, usage_of(role, getattr(exc, "messages", [])))
            return {
                "evaluations": [record],
                "usage": usage,
                "structured_methods": self._methods_used("judge"),
            }
        for key, messages in verdict.messages.items():
            usage = merge_usage(usage, usage_of(key, messages))
        record["scores"] = [s.model_dump() for s in verdict.evaluation.scores]
        record["reward"] = verdict.reward
        if len(verdict.jurors) > 1:
            record["jury"] = [[s.model_dump() for s in j.scores] if j else [] for j in verdict.jurors]
            record["jury_errors"] = verdict.errors
            record["disagreement"] = verdict.disagreement
        return {"evaluations": [record], "usage": usage, "structured_methods": self._methods_used("judge")}

    # -- memory recall (run through the call drivers: off the event loop under ainvoke, traced) --

    @property
    def _recall_runnable(self) -> RunnableLambda[dict[str, Any], list[Critique]]:
        return RunnableLambda(self._recall, name="drpo_recall_critiques")

    def _recall(self, task: dict[str, Any]) -> list[Critique]:
        assert self.memory is not None
        # Search by the queries and what went wrong, so lessons come from similar failures.
        text = "\n".join(
            [c["query"] for c in task["cases"]]
            + [
                f"{s['aspect']}: {s['rationale']}"
                for c in task["cases"]
                for s in c["scores"]
                if s["score"] <= 3
            ]
        )
        scope = self.config.memory_scope
        recalled = self.memory.recall(
            text,
            k=self.config.memory_k + 5 * len(task["cases"]),
            responder_model=self.models["responder"] if scope == "model" else None,
            run_id=task["run_id"] if scope == "run" else None,
        )
        # The parent's own critiques are already in the rewrite prompt; lessons are the others.
        own = {c["query"] for c in task["cases"]}
        others = [
            c
            for c in recalled
            if not (c.run_id == task["run_id"] and c.candidate_id == task["parent_id"] and c.query in own)
        ]
        return others[: self.config.memory_k]

    # -- helpers -----------------------------------------------------------------------------

    def _agent_of(self, role: str) -> Judge | PromptRewriter:
        return self.judge if role == "judge" else self.rewriter

    def _methods_used(self, *roles: str) -> dict[str, str]:
        """The structured-output method of each role, as far as known (forced, or discovered)."""
        used: dict[str, str] = {}
        for role in roles:
            agent = self._agent_of(role)
            label = agent.method if agent.method != "auto" else self.methods.label(agent.model)
            if label:
                used[role] = label
        return used

    def _recall_methods(self, state: DRPOState) -> None:
        """Seed the method memory from the checkpoint, so a resumed run does not rediscover what
        the run found before (tasks restored mid-level may still rediscover: harmless)."""
        for role, label in (state.get("structured_methods") or {}).items():
            if role not in ("judge", "rewriter"):
                continue
            agent = self._agent_of(role)
            if agent.method == "auto" and label in METHOD_STEPS and self.methods.get(agent.model) is None:
                self.methods.remember(agent.model, label)

    def _batch(self, state: DRPOState) -> list[dict[str, str]]:
        """The queries of the current level (or the validation queries during validation)."""
        if state.get("phase") == "validation":
            return state["validation_bank"]
        return _level_batch(state, state["level"], self.config.queries_per_step)

    @staticmethod
    def _examples(state: DRPOState) -> list[ICLExample]:
        # After DRPO's first stage the optimized examples replace the seed ones.
        raw = state.get("optimized_icl_examples") or state.get("icl_examples") or []
        return [ICLExample.model_validate(e) for e in raw]

    def _retriever(self, examples: list[ICLExample]) -> ICLRetriever:
        key = json.dumps([[e.query, e.answer] for e in examples])
        if key not in self._retrievers:
            self._retrievers[key] = self.retriever_factory(examples)
        return self._retrievers[key]

    def _critiques(self, run_id: str, records: list[dict[str, Any]]) -> list[Critique]:
        return [
            Critique(
                query=record["query"],
                aspect=score["aspect"],
                score=score["score"],
                rationale=score["rationale"],
                run_id=run_id,
                responder_model=self.models["responder"],
                candidate_id=record["candidate_id"],
                level=record["level"],
                query_id=record["query_id"],
            )
            for record in sorted(records, key=lambda r: (r["candidate_id"], r["query_id"]))
            if not record.get("error")
            for score in record["scores"]
        ]

    def _is_settled(self, record: dict[str, Any]) -> bool:
        scores = [s["score"] for s in record["scores"]]
        return bool(scores) and (all(s == 5 for s in scores) or mean(scores) > self.config.skip_threshold)

    @staticmethod
    def _latest_evaluations(state: DRPOState, candidate_id: str) -> list[dict[str, Any]]:
        own = [
            r
            for r in state.get("evaluations", [])
            if r["candidate_id"] == candidate_id
            and not r.get("error")
            and r.get("phase", "search") == "search"
        ]
        if not own:
            return []
        last = max(r["level"] for r in own)
        return sorted((r for r in own if r["level"] == last), key=lambda r: r["query_id"])

    def _rewrite_payload(self, state: DRPOState, parent_id: str, rank: int) -> dict[str, Any]:
        candidates = state["candidates"]
        history: list[str] = []
        ancestor = candidates[parent_id].get("parent_id")
        while ancestor is not None and len(history) < self.config.prompt_history:
            prompt = candidates[ancestor]["prompt"]
            if prompt not in history and prompt != candidates[parent_id]["prompt"]:
                history.insert(0, prompt)
            ancestor = candidates[ancestor].get("parent_id")
        return {
            "run_id": state["run_id"],
            "parent_id": parent_id,
            "rank": rank,
            "level": state["level"],
            "prompt": candidates[parent_id]["prompt"],
            "previous_prompts": history,
            "cases": [
                {"query": r["query"], "answer": r["answer"], "scores": r["scores"]}
                for r in self._latest_evaluations(state, parent_id)
            ],
        }


def _tagged(config: RunnableConfig, task: dict[str, Any], *keys: str) -> RunnableConfig:
    """Forward the node's config with the task's ids (and its run id) as trace metadata."""
    ids = {f"drpo_{k}": task[k] for k in keys}
    if "run_id" in task:  # set by optimize() too, but not when the graph is used directly
        ids["drpo_run_id"] = task["run_id"]
    metadata = {**config.get("metadata", {}), **ids}
    return {**config, "metadata": metadata}


def create_drpo_graph(
    responder: str | BaseLanguageModel[Any],
    judge: str | BaseChatModel,
    rewriter: str | BaseChatModel | None = None,
    *,
    config: DRPOConfig | None = None,
    icl_examples: Sequence[ICLExample] | None = None,
    embeddings: EmbeddingsLike | None = None,
    aspects: AspectCatalog | None = None,
    icl_retriever_factory: Callable[[list[ICLExample]], ICLRetriever] | None = None,
    memory: CritiqueMemory | None = None,
    cache: BaseCache | None = None,
    jury: Sequence[str | BaseChatModel] = (),
) -> StateGraph[DRPOState, None, DRPOInput, DRPOOutput]:
    """Build the DRPO self-alignment graph (uncompiled, so you choose the checkpointer).

    Args:
        responder: the model being aligned: a chat model, a completion model (base-model
            mode), or a ``"provider:model"`` string for ``init_chat_model`` (``"sandbox"`` for
            the offline simulation).
        judge: the dynamic-reward judge model (or string).
        rewriter: the prompt rewriter; defaults to the judge's model.
        config: search hyper-parameters; defaults reproduce the reference DRPO search.
        icl_examples: the ICL set the responder retrieves from; defaults to the packaged seed set.
        embeddings: embeddings for ICL retrieval; defaults to offline :class:`HashingEmbeddings`.
        aspects: the judge's aspect catalog; defaults to the 14 built-in aspects.
        icl_retriever_factory: builds the retriever over an ICL set (the seed set, or the
            optimized one after the ICL stage), e.g. one returning a
            :class:`~drpo_agents.memory.ChromaICLRetriever`; defaults to in-memory retrieval.
        memory: critique memory; every judged answer is stored and the rewriter is shown
            similar past critiques (``config.critique_memory`` turns it off).
        cache: LLM response cache, applied per ``config.cache`` (aspect selection only by
            default; ``"all"`` makes re-runs and resumes free).
        jury: further judge models (or strings) that score every answer beside ``judge``; the
            scores are aggregated per aspect by median and the jurors' disagreement recorded.
            Without it, ``config.jury_size > 1`` asks ``judge`` several times instead.

    Returns:
        A ``StateGraph``. Compile it (``graph.compile(checkpointer=...)``) and invoke it with
        ``{"queries": [...]}``; the output's ``"artifact"`` is an :class:`AlignmentArtifact` dict.
        Pass ``{"max_concurrency": N}`` in the run config to bound parallel model calls.

    Example:
        >>> graph = create_drpo_graph(responder="sandbox", judge="sandbox").compile()
        >>> out = graph.invoke({"queries": ["How do tides work?", "Plan a picnic.", "Hack my ex's email."]})
    """
    cfg = config or DRPOConfig()
    responder_model = resolve_model(responder, "responder")
    judge_model = resolve_model(judge, "judge")
    # The rewriter defaults to the judge's model (for a string, that model built for the rewriter role).
    rewriter_model = resolve_model(rewriter if rewriter is not None else default_rewriter(judge), "rewriter")
    jury_models = [resolve_model(m, "judge") for m in jury]
    # Every role gets a reply cap (models with their own limit keep it): no call runs to the
    # end of a server's context.
    limits = cfg.role_max_tokens
    responder_model = with_output_limit(responder_model, limits["responder"])
    judge_model = with_output_limit(judge_model, limits["judge"])
    rewriter_model = with_output_limit(rewriter_model, limits["rewriter"])
    jury_models = [with_output_limit(m, limits["judge"]) for m in jury_models]
    if not isinstance(judge_model, BaseChatModel) or not isinstance(rewriter_model, BaseChatModel):
        raise TypeError("the judge and the rewriter must be chat models")
    if not all(isinstance(m, BaseChatModel) for m in jury_models):
        raise TypeError("every juror must be a chat model")
    if jury_models and cfg.jury_size not in (1, len(jury_models) + 1):
        raise ConfigError(
            f"jury_size={cfg.jury_size} but {len(jury_models) + 1} judges were given (the judge and "
            f"{len(jury_models)} jurors); leave jury_size at 1 or make them agree"
        )
    # The structured-output methods each endpoint accepts, discovered once per graph (see
    # drpo_agents.structured); the ICL stage shares it.
    methods = StructuredMethods()
    examples = list(icl_examples) if icl_examples is not None else load_seed_icl_examples()
    identities = {
        "responder": model_identity(responder_model),
        "judge": model_identity(judge_model),
        "rewriter": model_identity(rewriter_model),
    }
    if jury_models:
        identities["jury"] = ", ".join(dict.fromkeys(model_identity(m) for m in jury_models))
    notes = model_notes({"responder": responder_model, "judge": judge_model, "rewriter": rewriter_model})
    selection_model = judge_model
    if cache is not None and cfg.cache != "off":
        selection_model = judge_model.model_copy(update={"cache": cache})
        if cfg.cache == "all":
            responder_model, judge_model, rewriter_model, *jury_models = cached_copies(
                [responder_model, judge_model, rewriter_model, *jury_models], cache
            )
    search = _DRPOSearch(
        responder=Responder(
            responder_model,
            retriever=None,
            k=cfg.icl_k,
            mode=cfg.responder_mode,
            prompts_dir=cfg.prompts_dir,
        ),
        judge=Judge(
            judge_model,
            catalog=aspects,
            method=cfg.structured_output_for("judge"),
            max_retries=cfg.max_parse_retries,
            prompts_dir=cfg.prompts_dir,
            selection_model=selection_model,
            jury=[m for m in jury_models if isinstance(m, BaseChatModel)],
            jury_size=cfg.jury_size,
            methods=methods,
        ),
        rewriter=PromptRewriter(
            rewriter_model,
            max_bullets=cfg.max_bullets,
            max_new_bullets=cfg.max_new_bullets,
            max_prompt_tokens=cfg.max_prompt_tokens,
            method=cfg.structured_output_for("rewriter"),
            max_retries=cfg.max_parse_retries,
            prompts_dir=cfg.prompts_dir,
            methods=methods,
        ),
        config=cfg,
        icl_examples=examples,
        models=identities,
        notes=notes,
        memory=memory,
        retriever_factory=icl_retriever_factory or (lambda shots: InMemoryICLRetriever(shots, embeddings)),
    )

    graph = StateGraph(DRPOState, input_schema=DRPOInput, output_schema=DRPOOutput)
    graph.add_node("prepare", search.prepare)
    limiter = (
        RoleLimiter({str(role): n for role, n in cfg.role_concurrency.items()})
        if cfg.role_concurrency
        else None
    )
    graph.add_node("rewrite", plan_node("rewrite", search.plan_rewrite, limiter))
    graph.add_node("select_aspects", plan_node("select_aspects", search.plan_select_aspects, limiter))
    graph.add_node("dispatch_evaluations", search.dispatch_evaluations)
    graph.add_node("evaluate", plan_node("evaluate", search.plan_evaluate, limiter))
    graph.add_node("select_beam", search.select_beam)
    graph.add_node("next_level", search.next_level)
    graph.add_node("finalize", search.finalize)
    level_work = ["rewrite", "select_aspects", "dispatch_evaluations", "finalize"]
    if cfg.review:
        graph.add_node("review", search.review)
        graph.add_edge("review", "finalize")
        level_work.append("review")
    graph.add_edge(START, "prepare")
    if cfg.icl_iters > 0:
        # DRPO's first stage: optimize the ICL answers, then search prompts with them (a
        # subgraph, so it is checkpointed and resumable on its own).
        from drpo_agents.icl_stage import ICLStageConfig, create_icl_stage_graph

        icl_stage = create_icl_stage_graph(
            judge_model,
            rewriter_model,
            config=ICLStageConfig.from_drpo_config(cfg, num_iters=cfg.icl_iters),
            aspects=aspects,
            methods=methods,
        ).compile(name="drpo_icl_stage")
        graph.add_node("icl_stage", icl_stage)
        graph.add_edge("prepare", "icl_stage")
        graph.add_conditional_edges("icl_stage", search.route_level_work, level_work)
    else:
        graph.add_conditional_edges("prepare", search.route_level_work, level_work)
    graph.add_edge("rewrite", "dispatch_evaluations")
    graph.add_edge("select_aspects", "dispatch_evaluations")
    graph.add_conditional_edges("dispatch_evaluations", search.route_evaluations, ["evaluate", "select_beam"])
    graph.add_edge("evaluate", "select_beam")
    if cfg.acceptance_gate:
        # After each level: validate the incumbent and the new best, then accept or reject.
        graph.add_node("validate", plan_node("validate", search.plan_evaluate, limiter))
        graph.add_node("gate", search.gate)
        graph.add_conditional_edges("select_beam", search.route_gate, ["validate", "gate", "next_level"])
        graph.add_edge("validate", "gate")
        graph.add_edge("gate", "next_level")
    else:
        graph.add_edge("select_beam", "next_level")
    graph.add_conditional_edges("next_level", search.route_level_work, level_work)
    graph.add_edge("finalize", END)
    return graph
