"""Graph state of the DRPO search. Plain JSON-ready values only, so every checkpointer can store it."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, Required

# typing_extensions' TypedDict: pydantic (and so LangGraph Server's schema endpoint) cannot read
# typing.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from drpo_agents.search.records import (
    AspectChoice,
    Candidate,
    Evaluation,
    Failure,
    GateDecisionDict,
    LevelSummary,
    Query,
    ReviewDecision,
    ValidationRow,
)
from drpo_agents.usage import UsageByRole, merge_usage


def merge_records(
    left: Mapping[str, dict[str, Any]] | None, right: Mapping[str, dict[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Reducer for id-keyed records: fields in ``right`` update the record of the same id."""
    merged = {key: dict(value) for key, value in (left or {}).items()}
    for key, value in (right or {}).items():
        merged[key] = {**merged.get(key, {}), **value}
    return merged


def merge_labels(left: Mapping[str, str] | None, right: Mapping[str, str] | None) -> dict[str, str]:
    """Reducer for role -> label maps: the latest label of a role wins."""
    return {**(left or {}), **(right or {})}


class _RunFields(TypedDict, total=False):
    initial_prompt: str
    run_id: str
    icl_examples: list[Any]  # seed ICL examples (ICLExample dicts); default: the factory's


class DRPOInput(_RunFields, total=False):
    """What a run starts from.

    ``queries`` are training queries, as strings or ``{"id": ..., "query": ...}`` dicts.
    """

    queries: Required[list[Any]]


class _SearchFields(TypedDict, total=False):
    query_bank: list[Query]  # training queries in visiting order
    level: int
    depth_limit: int
    depth_extensions: int
    beam: list[str]
    to_rewrite: list[str]  # beam candidates to rewrite at this level
    stop_reason: str
    validation_bank: list[Query]  # held-out training queries for the final re-ranking
    validation: list[ValidationRow]  # per-candidate validation results
    validated_best: str
    incumbent: str  # the acceptance gate's current prompt (config.acceptance_gate)
    gate_decisions: Annotated[list[GateDecisionDict], operator.add]
    review: ReviewDecision  # the reviewer's decision, when config.review is on
    stopped_by_budget: bool  # a resume with a larger budget may continue the search
    candidates: Annotated[dict[str, Candidate], merge_records]
    evaluations: Annotated[list[Evaluation], operator.add]
    aspect_cache: Annotated[dict[str, AspectChoice], merge_records]
    levels: Annotated[list[LevelSummary], operator.add]
    failures: Annotated[list[Failure], operator.add]
    usage: Annotated[UsageByRole, merge_usage]
    structured_methods: Annotated[dict[str, str], merge_labels]  # role -> structured-output method
    artifact: dict[str, Any]  # an AlignmentArtifact dump
    optimized_icl_examples: list[dict[str, Any]]  # written by the ICL stage
    icl_records: list[dict[str, Any]]  # per-example rounds of the ICL stage


class DRPOState(DRPOInput, _SearchFields, total=False):
    """The whole search, checkpointed after every step.

    Candidates and evaluations are append-only records (the search tree); ``beam`` and
    ``level`` say where the search stands.
    """


class DRPOUpdate(_RunFields, _SearchFields, total=False):
    """What a node returns: some of the state's fields (reducers merge them in)."""


class DRPOOutput(TypedDict, total=False):
    """What a finished run returns: the artifact (as a dict) and the best prompt."""

    artifact: dict[str, Any]
    beam: list[str]
    to_rewrite: list[str]  # beam candidates to rewrite at this level
    stop_reason: str
