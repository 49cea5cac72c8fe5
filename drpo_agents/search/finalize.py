"""Finalize: build the run's artifact from the chosen prompt and the recorded search tree."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from drpo_agents.artifact import (
    AlignmentArtifact,
    CandidateRecord,
    EvaluationRecord,
    GateDecision,
    ICLOptimizationRecord,
    ICLRetrievalRecord,
    LevelRecord,
    ParentRecord,
    TokenUsage,
    ValidationRecord,
)
from drpo_agents.embeddings import embeddings_name
from drpo_agents.search.budget import spent
from drpo_agents.search.context import SearchContext, current_examples
from drpo_agents.search.state import DRPOState, DRPOUpdate


def finalize(ctx: SearchContext, state: DRPOState) -> DRPOUpdate:
    """Build the artifact from the final beam and the recorded search tree."""
    config = ctx.config
    review = state.get("review")
    best_id = (review["candidate_id"] if review else None) or ctx.selection.chosen(state)
    candidates = sorted(state["candidates"].values(), key=lambda c: (c["level"], c["id"]))
    evaluations = sorted(
        state.get("evaluations", []), key=lambda r: (r["level"], r["candidate_id"], r["query_id"])
    )
    validation = ctx.selection.validation_rows(state)
    artifact = AlignmentArtifact(
        run_id=state["run_id"],
        system_prompt=state["candidates"][best_id]["prompt"],
        icl_examples=current_examples(state),
        icl_optimization=[ICLOptimizationRecord.model_validate(r) for r in state.get("icl_records", [])],
        icl_k=config.icl_k,
        icl_retrieval=_retrieval_record(ctx, state),
        best_candidate_id=best_id,
        parent=ParentRecord.model_validate(state["parent"]) if state.get("parent") else None,
        memory_runs=state.get("memory_runs", []),
        histories={
            q["id"]: [dict(t) for t in q["history"]]
            for q in [*state.get("query_bank", []), *state.get("validation_bank", [])]
            if "history" in q
        },
        candidates=[CandidateRecord.model_validate(c) for c in candidates],
        evaluations=[EvaluationRecord.model_validate(e) for e in evaluations],
        levels=[
            LevelRecord.model_validate(r) for r in sorted(state.get("levels", []), key=lambda r: r["level"])
        ],
        config=config.to_json_dict(),
        models=ctx.models,
        usage={role: TokenUsage.model_validate(u) for role, u in state.get("usage", {}).items()},
        cost=spent(config, ctx.models, state.get("usage", {}))[1],
        validation=[ValidationRecord.model_validate(r) for r in validation],
        gate_decisions=[GateDecision.model_validate(d) for d in state.get("gate_decisions", [])],
        search_best_candidate_id=state["beam"][0],
        review=dict(review) if review is not None else None,
        structured_output_methods=dict(state.get("structured_methods", {})),
        notes=[*ctx.notes, f"stopped: {state.get('stop_reason', 'finished')}"],
    )
    return {"artifact": artifact.model_dump(mode="json")}


def _retrieval_record(ctx: SearchContext, state: DRPOState) -> ICLRetrievalRecord | None:
    """The embeddings and floor the run's ICL retriever used (None for a custom retriever without them)."""
    retriever = ctx.retriever(current_examples(state))
    embeddings = getattr(retriever, "embeddings", None)
    floor = getattr(retriever, "min_similarity", None)
    if not isinstance(embeddings, Embeddings) or not isinstance(floor, int | float):
        return None
    return ICLRetrievalRecord(embeddings=embeddings_name(embeddings), min_similarity=float(floor))
