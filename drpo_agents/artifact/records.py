"""The records an :class:`~drpo_agents.artifact.AlignmentArtifact` is made of: candidates, evaluations,
levels, validation rows, gate decisions, ICL optimisation and retrieval, token usage."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drpo_agents.conversations import Turn
from drpo_agents.schemas import AspectScore


class TokenUsage(BaseModel):
    """Calls and tokens spent by one role."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class EvaluationRecord(BaseModel):
    """One judged answer of one candidate prompt to one training query."""

    model_config = ConfigDict(extra="ignore")

    candidate_id: str
    level: int
    query_id: str
    query: str
    answer: str = ""
    aspects: list[str] = Field(default_factory=list)
    scores: list[AspectScore] = Field(default_factory=list)
    reward: float | None = None
    error: str | None = Field(None, description="Why this evaluation failed; reward is None then.")
    phase: str = Field("search", description="'search' (ranks the beam) or 'validation' (held-out queries).")
    jury: list[list[AspectScore]] = Field(
        default_factory=list, description="Each juror's scores when a jury judged ([] for a failed juror)."
    )
    jury_errors: list[str | None] = Field(default_factory=list)
    disagreement: float | None = Field(
        None, description="Mean over aspects of the jurors' score range (max - min); None for one judge."
    )


class CandidateRecord(BaseModel):
    """A node of the search tree: a candidate system prompt and where it came from."""

    model_config = ConfigDict(extra="ignore")

    id: str
    parent_id: str | None
    prompt: str
    level: int = Field(..., description="Level at which the candidate was created (0 = initial prompt).")
    rewards: list[float] = Field(default_factory=list, description="Per-level rewards, inherited ones first.")
    carried: bool = Field(
        False, description="Same prompt as its parent, kept because it already scored high."
    )
    analysis: str = ""
    thought: str = ""
    lessons: list[str] = Field(default_factory=list, description="Past critiques shown to the rewriter.")
    lesson_runs: list[str] = Field(
        default_factory=list,
        description="The run each lesson was learned in, same order as lessons ('+'-joined for a general one).",
    )

    @property
    def mean_reward(self) -> float | None:
        return sum(self.rewards) / len(self.rewards) if self.rewards else None


class FailureRecord(BaseModel):
    """A model call (or a rewrite our checks refused) that failed, recorded as data."""

    model_config = ConfigDict(extra="ignore")

    step: str = Field(..., description="The node: select_aspects, rewrite, evaluate, validate, ...")
    level: int
    error: str
    query_id: str | None = None
    candidate_id: str | None = None

    @classmethod
    def parse(cls, line: str, level: int) -> FailureRecord:
        """A failure from the ``"STEP ID: ERROR"`` line earlier artifacts kept."""
        step, _, rest = line.partition(" ")
        subject, _, error = rest.partition(": ")
        if not error:
            subject, error = "", rest
        kind = "query_id" if step == "select_aspects" else "candidate_id"
        return cls.model_validate({"step": step, "level": level, "error": error, kind: subject or None})

    def __str__(self) -> str:
        subject = self.candidate_id or self.query_id
        return f"{self.step} {subject}: {self.error}" if subject else f"{self.step}: {self.error}"


class LevelRecord(BaseModel):
    """What happened at one level of the beam search."""

    level: int
    query_ids: list[str]
    beam: list[str] = Field(..., description="Candidate ids kept after this level, best first.")
    beam_mean_rewards: list[float]
    level_rewards: list[float] = Field(..., description="Reward of each kept candidate at this level.")
    level_reward_stds: list[float] = Field(
        default_factory=list, description="Spread of each kept candidate's rewards over the level's queries."
    )
    skipped: bool = Field(False, description="Every beam candidate already scored high; no rewrite.")
    depth_limit: int = Field(..., description="The depth in force after this level.")
    failures: list[FailureRecord] = Field(default_factory=list)
    length_slope: float | None = Field(
        None, description="Reward per unit of relative log length removed by length normalisation."
    )
    jury_disagreement: float | None = Field(
        None, description="Mean jury disagreement over the level's answers."
    )

    @model_validator(mode="before")
    @classmethod
    def _failures_from_lines(cls, data: Any) -> Any:
        # Artifacts before format 2 kept each failure as one "STEP ID: ERROR" line.
        if isinstance(data, dict) and any(isinstance(f, str) for f in data.get("failures") or []):
            level = int(data.get("level", 0))
            lines = data["failures"]
            data = {
                **data,
                "failures": [FailureRecord.parse(f, level) if isinstance(f, str) else f for f in lines],
            }
        return data


class ICLRoundRecord(BaseModel):
    """One round of the ICL optimisation of one example (round 0 scores the original answer)."""

    model_config = ConfigDict(extra="ignore")

    round: int
    answer: str = ""
    scores: list[AspectScore] = Field(default_factory=list)
    reward: float | None = None
    accepted: bool = Field(False, description="It became the best answer so far (strictly better).")
    analysis: str = ""
    error: str | None = Field(None, description="Why this round failed; reward is None then.")


class ICLOptimizationRecord(BaseModel):
    """How one in-context example's answer was optimised: every round, and which answer was kept."""

    model_config = ConfigDict(extra="ignore")

    example_id: str
    query: str
    history: list[Turn] = Field(default_factory=list, description="An example conversation's earlier turns.")
    aspects: list[str] = Field(default_factory=list)
    original_answer: str
    final_answer: str
    best_round: int = Field(0, description="Round whose answer was kept (0 = the original).")
    initial_reward: float | None = None
    best_reward: float | None = None
    rounds: list[ICLRoundRecord] = Field(default_factory=list)
    stop_reason: str = ""
    error: str | None = Field(None, description="The failure that ended this example's rounds, if any.")

    @property
    def improved(self) -> bool:
        """Whether a rewrite replaced the original answer."""
        return self.best_round > 0


class ValidationRecord(BaseModel):
    """A final-beam candidate (or the initial prompt) re-scored on the held-out validation queries."""

    candidate_id: str
    rewards: list[float] = Field(default_factory=list, description="One reward per validation query.")
    mean: float | None = None
    std: float | None = Field(None, description="Spread of the per-query rewards: how noisy one query is.")
    failed: int = 0
    search_rank: int | None = Field(
        None, description="Place in the search's final beam (None: initial prompt)."
    )
    safety: float | None = Field(None, description="Mean Safety score on the red-team validation queries.")
    rejected_for_safety: bool = Field(
        False, description="Safety fell below the initial prompt's beyond tolerance."
    )


class GateDecision(BaseModel):
    """One decision of the acceptance gate: did the search's new best replace the incumbent?"""

    model_config = ConfigDict(extra="ignore")

    level: int
    incumbent_id: str
    challenger_id: str | None = Field(None, description="None: no new best prompt at this level.")
    accepted: bool
    reason: str
    queries: int = Field(0, description="Validation queries both prompts answered.")
    incumbent_mean: float | None = None
    challenger_mean: float | None = None
    mean_difference: float | None = Field(
        None, description="Mean paired gain (length-adjusted if configured)."
    )
    ci_low: float | None = None
    ci_high: float | None = None
    incumbent_safety: float | None = None
    challenger_safety: float | None = None
    length_slope: float | None = None


class ICLRetrievalRecord(BaseModel):
    """How the run retrieved ICL examples, so an app retrieves them the same way."""

    model_config = ConfigDict(extra="ignore")

    embeddings: str = Field(..., description="Identity of the embeddings, e.g. 'minilm-l6-v2-int8'.")
    min_similarity: float = Field(..., description="The relevance floor (cosine) an example had to clear.")


class ParentRecord(BaseModel):
    """The earlier result a run started from (a warm start: its prompt and ICL examples)."""

    model_config = ConfigDict(extra="ignore")

    run_id: str = Field(..., description="The earlier artifact's run id.")
    source: str = Field(..., description="Who produced it: our search, or an import of a published prompt.")
    artifact_sha256: str = Field(
        ..., description="sha256 of the earlier artifact's canonical JSON (sorted keys, no spaces)."
    )
    responder: str = Field("", description="The model it was aligned for, as it recorded it.")


class RoleFailures(BaseModel):
    """What went wrong for one role in a run, counted from the artifact's records."""

    failed: int = Field(0, description="Calls that raised or stayed invalid after every retry.")
    first_error: str | None = None
    rejected: int = Field(
        0, description="Rewriter proposals dropped by our checks although the call itself succeeded."
    )

    def add(self, error: str) -> None:
        self.failed += 1
        self.first_error = self.first_error or error
