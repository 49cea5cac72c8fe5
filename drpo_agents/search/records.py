"""The search's typed records: candidates, evaluations, levels, gate decisions and task payloads.

They are plain JSON-ready dicts (so every checkpointer stores them); their fields mirror the
pydantic records of :mod:`drpo_agents.artifact` (a test keeps them in step).
"""

from __future__ import annotations

from typing import NotRequired

# typing_extensions' TypedDict: pydantic (and so LangGraph Server's schema endpoint) cannot read
# typing.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from drpo_agents.conversations import Turn
from drpo_agents.datasets import Query
from drpo_agents.schemas import AspectScore, ICLExample

__all__ = ["Query", "Turn"]  # re-exported with the search's other records

ROOT_ID = "c0"


class Score(TypedDict):
    """One aspect's 1-5 score (an ``AspectScore`` dump)."""

    aspect: str
    rationale: str
    score: int


def score_of(score: AspectScore) -> Score:
    """``score`` as a record."""
    return {"aspect": score.aspect, "rationale": score.rationale, "score": score.score}


class Candidate(TypedDict):
    """A node of the search tree (``artifact.CandidateRecord``)."""

    id: str
    parent_id: str | None
    prompt: str
    level: int
    rewards: list[float]
    carried: bool
    analysis: str
    thought: str
    lessons: NotRequired[list[str]]
    lesson_runs: NotRequired[list[str]]  # the run each lesson was learned in, in the same order


class Evaluation(TypedDict):
    """One judged answer (``artifact.EvaluationRecord``)."""

    candidate_id: str
    level: int
    query_id: str
    query: str
    aspects: list[str]
    answer: str
    scores: list[Score]
    reward: float | None
    error: str | None
    phase: str
    jury: NotRequired[list[list[Score]]]
    jury_errors: NotRequired[list[str | None]]
    disagreement: NotRequired[float | None]


class LevelSummary(TypedDict):
    """What happened at one level (``artifact.LevelRecord``)."""

    level: int
    query_ids: list[str]
    beam: list[str]
    beam_mean_rewards: list[float]
    level_rewards: list[float]
    level_reward_stds: list[float]
    skipped: bool
    depth_limit: int
    failures: list[Failure]
    length_slope: float | None
    jury_disagreement: float | None


class GateDecisionDict(TypedDict):
    """One acceptance-gate decision (``artifact.GateDecision``); the comparison fields are absent
    when there was no challenger."""

    level: int
    incumbent_id: str
    challenger_id: str | None
    accepted: bool
    reason: str
    incumbent_mean: float | None
    incumbent_safety: float | None
    queries: NotRequired[int]
    challenger_mean: NotRequired[float | None]
    mean_difference: NotRequired[float | None]
    ci_low: NotRequired[float | None]
    ci_high: NotRequired[float | None]
    challenger_safety: NotRequired[float | None]
    length_slope: NotRequired[float | None]


class ValidationRow(TypedDict):
    """One candidate re-scored on the validation queries (``artifact.ValidationRecord``)."""

    candidate_id: str
    rewards: list[float]
    mean: float | None
    std: float | None
    failed: int
    search_rank: int | None
    safety: float | None
    rejected_for_safety: NotRequired[bool]


class Failure(TypedDict):
    """A failed step, recorded as data (``artifact.FailureRecord``; in its level's ``failures``)."""

    step: str
    level: int
    error: str
    query_id: NotRequired[str | None]
    candidate_id: NotRequired[str | None]


class AspectChoice(TypedDict):
    """The judge's aspects for one query (an ``AspectSelection`` dump), cached per query id."""

    query_analysis: dict[str, str] | None
    reasoning: str
    selected_aspects: list[str]
    fallback: NotRequired[bool]  # the judge failed; these are FALLBACK_ASPECTS
    required: NotRequired[list[str]]  # aspects added because the query needs them (red-team Safety)


class ReviewDecision(TypedDict):
    """The reviewer's decision on the final prompt."""

    action: str
    candidate_id: str
    rejected: NotRequired[str]
    edited: NotRequired[str]


class ReviewRequest(TypedDict, total=False):
    """What a run paused for review shows the reviewer (the ``interrupt`` value)."""

    kind: str  # "drpo_review"
    run_id: str
    candidate_id: str
    prompt: str
    initial_prompt: str
    rewards: list[float]
    validation: list[ValidationRow]
    actions: list[str]
    error: str  # why the last answer was not a valid decision (asked again)


class ReviewAnswer(TypedDict, total=False):
    """A reviewer's decision: ``{"action": "approve" | "reject"}`` or ``{"action": "edit", "prompt": ...}``."""

    action: str
    prompt: str


class RewriteCase(TypedDict):
    """One judged answer of the parent, shown to the rewriter."""

    query: str
    answer: str
    scores: list[Score]
    history: NotRequired[list[Turn]]  # a conversation's earlier turns


class RewriteTask(TypedDict):
    """``Send`` payload of ``rewrite``: rewrite one beam candidate into ``n_actions`` children."""

    run_id: str
    parent_id: str
    rank: int
    level: int
    prompt: str
    previous_prompts: list[str]
    cases: list[RewriteCase]
    memory_runs: NotRequired[list[str]]  # the run's memory_runs, where its memory keeps a ledger


class AspectTask(TypedDict):
    """``Send`` payload of ``select_aspects``: choose the aspects of one query."""

    run_id: str
    query_id: str
    query: str
    level: int
    required_aspects: list[str]
    history: NotRequired[list[Turn]]  # a conversation's earlier turns


class ICLShot(TypedDict):
    """An ICL example as plain JSON (the fields of ``schemas.ICLExample``)."""

    query: str
    answer: str
    id: str | None
    history: NotRequired[list[Turn]]  # only for an example that is a conversation


def shot_of(example: ICLExample) -> ICLShot:
    """``example`` as a record."""
    shot: ICLShot = {"query": example.query, "answer": example.answer, "id": example.id}
    if example.history:
        shot["history"] = list(example.history)
    return shot


class EvaluateTask(TypedDict):
    """``Send`` payload of ``evaluate`` and ``validate``: answer one query under one prompt, judge it."""

    run_id: str
    candidate_id: str
    prompt: str
    level: int
    phase: str
    query_id: str
    query: str
    aspects: list[str]
    icl: list[ICLShot]  # retrieved by the router
    history: NotRequired[list[Turn]]  # a conversation's earlier turns
    system: NotRequired[str]  # the app's own system message, after the candidate prompt


def reward_of(record: Evaluation) -> float:
    """The reward of a successful record (records with an error are filtered out before)."""
    reward = record["reward"]
    assert reward is not None
    return reward


def candidate_id(level: int, rank: int, index: int) -> str:
    """The id of the ``index``-th child of the beam's ``rank``-th candidate at ``level``."""
    return f"c{level}-{rank}-{index}"


def new_candidate(
    id: str,
    *,
    parent_id: str | None,
    prompt: str,
    level: int,
    carried: bool = False,
    analysis: str = "",
    thought: str = "",
    lessons: list[str] | None = None,
    lesson_runs: list[str] | None = None,
) -> Candidate:
    """A candidate not yet evaluated (no rewards); ``lessons`` (and the runs they came from) only
    when the rewriter was shown some."""
    candidate: Candidate = {
        "id": id,
        "parent_id": parent_id,
        "prompt": prompt,
        "level": level,
        "rewards": [],
        "carried": carried,
        "analysis": analysis,
        "thought": thought,
    }
    if lessons is not None:
        candidate["lessons"] = lessons
        candidate["lesson_runs"] = lesson_runs if lesson_runs is not None else []
    return candidate


def describe_failure(failure: Failure) -> str:
    """A failure as one line: ``"STEP ID: ERROR"`` (the id of the candidate or query it concerns)."""
    subject = failure.get("candidate_id") or failure.get("query_id")
    return (
        f"{failure['step']} {subject}: {failure['error']}"
        if subject
        else f"{failure['step']}: {failure['error']}"
    )
