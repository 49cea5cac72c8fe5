"""Graph state of the DRPO search. Plain JSON-ready values only, so every checkpointer can store it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Required, TypeVar

from langgraph.channels import DeltaChannel

# typing_extensions' TypedDict: pydantic (and so LangGraph Server's schema endpoint) cannot read
# typing.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from drpo_agents.json_types import JsonObject
from drpo_agents.search.icl_example import ICLExampleRecord
from drpo_agents.search.records import (
    AspectChoice,
    Candidate,
    Evaluation,
    Failure,
    GateDecisionDict,
    ICLShot,
    LevelSummary,
    Query,
    ReviewDecision,
    ValidationRow,
)
from drpo_agents.usage import UsageByRole, merge_usage


def merge_records(
    left: Mapping[str, Mapping[str, object]] | None, right: Mapping[str, Mapping[str, object]] | None
) -> dict[str, dict[str, object]]:
    """Reducer for id-keyed records: fields in ``right`` update the record of the same id."""
    return _merged(left or {}, [right or {}])


def merge_labels(left: Mapping[str, str] | None, right: Mapping[str, str] | None) -> dict[str, str]:
    """Reducer for role -> label maps: the latest label of a role wins."""
    return {**(left or {}), **(right or {})}


_Value = TypeVar("_Value")

# How often a growing channel's whole value is stored as a snapshot, in updates (supersteps that
# write it); in between, a checkpoint stores none of it and a reload replays the channel's writes
# since the last snapshot. Measured (benchmarks/storage.py): see docs/STORAGE.md.
SNAPSHOT_EVERY = 100


def _appended(current: list[Any], batches: Sequence[list[Any]]) -> list[Any]:
    return [*current, *(item for batch in batches for item in batch)]


def _merged(
    current: Mapping[str, Mapping[str, object]], batches: Sequence[Mapping[str, Mapping[str, object]]]
) -> dict[str, dict[str, object]]:
    merged = {key: dict(value) for key, value in current.items()}  # copied once per batch
    for batch in batches:
        for key, value in batch.items():
            merged[key] = {**merged.get(key, {}), **value}
    return merged


def _latest(current: _Value, batches: Sequence[_Value]) -> _Value:
    return batches[-1]


# Channels whose checkpoints hold no copy of the value (LangGraph's DeltaChannel): each update is
# stored once, as the node's write, so checkpoint storage grows linearly with the work done
# instead of re-serializing the whole record list at every step. Their reducers take a batch of
# writes and are batching-invariant, as DeltaChannel requires.
Appended: DeltaChannel[list[Any]] = DeltaChannel(_appended, snapshot_frequency=SNAPSHOT_EVERY)
"""Append-only list: the writes (lists) concatenated in order."""
Merged: DeltaChannel[dict[str, dict[str, object]]] = DeltaChannel(_merged, snapshot_frequency=SNAPSHOT_EVERY)
"""Id-keyed records: fields of a later write update the record of the same id."""
WrittenOnce: DeltaChannel[Any] = DeltaChannel(_latest, snapshot_frequency=SNAPSHOT_EVERY)
"""A value written once (by the input or ``prepare``) and read at every step: stored once."""


class _RunFields(TypedDict, total=False):
    initial_prompt: str
    run_id: str
    # seed ICL examples (ICLExample dicts); default: the factory's
    icl_examples: Annotated[list[Any], WrittenOnce]
    parent: JsonObject  # a warm start's ParentRecord (drpo_agents.warm_start)


class DRPOInput(_RunFields, total=False):
    """What a run starts from.

    ``queries`` are training queries, as strings or ``{"id": ..., "query": ...}`` dicts.
    """

    queries: Annotated[Required[list[Any]], WrittenOnce]


class _SearchFields(TypedDict, total=False):
    query_bank: Annotated[list[Query], WrittenOnce]  # training queries in visiting order
    level: int
    depth_limit: int
    depth_extensions: int
    beam: list[str]
    to_rewrite: list[str]  # beam candidates to rewrite at this level
    stop_reason: str
    validation_bank: Annotated[list[Query], WrittenOnce]  # held-out training queries for the final re-ranking
    # Other runs whose critiques this run may recall: those finished when it began (RunLedger)
    memory_runs: Annotated[list[str], WrittenOnce]
    memory_owner: str  # the server user who started the run ("" outside a server): the ledger's owner
    validation: list[ValidationRow]  # per-candidate validation results
    validated_best: str
    incumbent: str  # the acceptance gate's current prompt (config.acceptance_gate)
    gate_decisions: Annotated[list[GateDecisionDict], Appended]
    review: ReviewDecision  # the reviewer's decision, when config.review is on
    stopped_by_budget: bool  # a resume with a larger budget may continue the search
    candidates: Annotated[dict[str, Candidate], Merged]
    evaluations: Annotated[list[Evaluation], Appended]
    aspect_cache: Annotated[dict[str, AspectChoice], Merged]
    levels: Annotated[list[LevelSummary], Appended]
    failures: Annotated[list[Failure], Appended]
    usage: Annotated[UsageByRole, merge_usage]
    structured_methods: Annotated[dict[str, str], merge_labels]  # role -> structured-output method
    artifact: JsonObject  # an AlignmentArtifact dump
    optimized_icl_examples: Annotated[list[ICLShot], WrittenOnce]  # written by the ICL stage
    icl_records: Annotated[list[ICLExampleRecord], WrittenOnce]  # per-example rounds of the ICL stage


class DRPOState(DRPOInput, _SearchFields, total=False):
    """The whole search, checkpointed after every step.

    Candidates and evaluations are append-only records (the search tree); ``beam`` and
    ``level`` say where the search stands. The growing and write-once fields are delta
    channels: each step's new records are stored once, as its writes, not in every checkpoint
    (docs/STORAGE.md).
    """


class DRPOUpdate(_RunFields, _SearchFields, total=False):
    """What a node returns: some of the state's fields (reducers merge them in)."""


class DRPOOutput(TypedDict, total=False):
    """What a finished run returns: the artifact (as a dict) and the best prompt."""

    artifact: JsonObject
    beam: list[str]
    to_rewrite: list[str]  # beam candidates to rewrite at this level
    stop_reason: str
