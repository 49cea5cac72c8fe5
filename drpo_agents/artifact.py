"""The result of an optimisation: the aligned prompt, its ICL examples and the whole search record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drpo_agents.errors import ArtifactError
from drpo_agents.json_files import read_json, save_json_atomically
from drpo_agents.rewards import (
    length_adjusted_rewards,
    length_slope,
    pearson,
    within_query_length_correlation,
)
from drpo_agents.schemas import AspectScore, ICLExample

ARTIFACT_FORMAT_VERSION = 1


def _parse_failures(failures: list[str]) -> list[tuple[str, str]]:
    """``(step, error)`` pairs from a level's failure lines (``"STEP ID: ERROR"``, see the search graph)."""
    pairs = []
    for line in failures:
        step, _, rest = line.partition(" ")
        pairs.append((step, rest.partition(": ")[2] or rest))
    return pairs


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

    @property
    def mean_reward(self) -> float | None:
        return sum(self.rewards) / len(self.rewards) if self.rewards else None


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
    failures: list[str] = Field(default_factory=list)
    length_slope: float | None = Field(
        None, description="Reward per unit of relative log length removed by length normalisation."
    )
    jury_disagreement: float | None = Field(
        None, description="Mean jury disagreement over the level's answers."
    )


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


FAILURE_ROLES = ("responder", "judge", "rewriter")


class AlignmentArtifact(BaseModel):
    """Everything needed to apply, inspect or resume the result of a DRPO run.

    Save it with :meth:`save` and load it with :meth:`load`; apply it to any chat model with
    :func:`drpo_agents.with_alignment`.
    """

    model_config = ConfigDict(extra="ignore")

    format_version: int = ARTIFACT_FORMAT_VERSION
    run_id: str
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    source: str = Field("drpo-agents", description="Who produced it (our search or an import).")
    system_prompt: str
    icl_examples: list[ICLExample] = Field(default_factory=list)
    icl_k: int = 2
    icl_retrieval: ICLRetrievalRecord | None = Field(
        None,
        description="The embeddings and relevance floor of ICL retrieval (None: an older or imported artifact).",
    )
    best_candidate_id: str | None = None
    candidates: list[CandidateRecord] = Field(default_factory=list)
    evaluations: list[EvaluationRecord] = Field(default_factory=list)
    levels: list[LevelRecord] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="Role -> model identity.")
    usage: dict[str, TokenUsage] = Field(default_factory=dict, description="Role -> calls and tokens.")
    structured_output_methods: dict[str, str] = Field(
        default_factory=dict,
        description="Role -> structured-output method used (json_schema, function_calling, json_mode, "
        "text), as discovered by 'auto' or forced.",
    )
    cost: float | None = Field(None, description="Total cost from the config's price table (None: unpriced).")
    validation: list[ValidationRecord] = Field(
        default_factory=list, description="Final re-ranking on held-out training queries, if configured."
    )
    review: dict[str, Any] | None = Field(
        None, description="A reviewer's decision on the final prompt (approve, edit or reject), if reviewed."
    )
    search_best_candidate_id: str | None = Field(
        None, description="The search's own best; differs from best_candidate_id when validation re-ranked."
    )
    gate_decisions: list[GateDecision] = Field(
        default_factory=list, description="Every accept/reject decision of the acceptance gate, if on."
    )
    notes: list[str] = Field(default_factory=list)
    icl_optimization: list[ICLOptimizationRecord] = Field(
        default_factory=list, description="Per-example records of the ICL optimisation stage, if it ran."
    )

    def candidate(self, candidate_id: str) -> CandidateRecord:
        """The search-tree node with this id."""
        for record in self.candidates:
            if record.id == candidate_id:
                return record
        raise KeyError(f"no candidate {candidate_id!r} in this artifact")

    def length_reward_correlation(self) -> float | None:
        """Pearson correlation between answer length (words) and reward over the run's evaluations.

        Near 0: the judge is not rewarding verbosity. Clearly positive: longer answers scored
        higher, so check the judge before trusting the search (None with fewer than 3 answers or
        no variation).
        """
        pairs = [(len(e.answer.split()), e.reward) for e in self.evaluations if e.reward is not None]
        return pearson([float(p[0]) for p in pairs], [float(p[1]) for p in pairs])

    def within_query_length_correlation(self, *, adjusted: bool = False) -> float | None:
        """Correlation of answer length with reward among answers to the same query (search phase).

        This is the comparison the search makes. With ``adjusted``, rewards are length-normalised
        (see :mod:`drpo_agents.rewards`) with a slope estimated on the *other* levels' answers,
        so the number is out of sample rather than zero by construction.
        """
        records = [e.model_dump() for e in self.evaluations if e.phase == "search" and e.reward is not None]
        if not adjusted:
            return within_query_length_correlation(records)
        rewards: dict[int, float] = {}
        for level in {r["level"] for r in records}:
            slope = length_slope(r for r in records if r["level"] != level)
            rewards.update(length_adjusted_rewards([r for r in records if r["level"] == level], slope))
        return within_query_length_correlation(records, rewards)

    def jury_disagreement_by_candidate(self) -> dict[str, float]:
        """Mean jury disagreement of each candidate's answers (empty without a jury)."""
        values: dict[str, list[float]] = {}
        for e in self.evaluations:
            if e.disagreement is not None:
                values.setdefault(e.candidate_id, []).append(e.disagreement)
        return {cid: sum(v) / len(v) for cid, v in values.items()}

    def failure_counts(self) -> dict[str, RoleFailures]:
        """Failed model calls per role (responder, judge, rewriter), with the first error of each.

        Counted from the records: a failed evaluation is the responder's when it produced no
        answer and the judge's otherwise; a failed juror and a failed aspect selection are the
        judge's; a level's ``rewrite`` failures are the rewriter's (proposals rejected by our
        checks are counted apart, as ``rejected``); failed ICL-stage rounds likewise.
        """
        counts = {role: RoleFailures() for role in FAILURE_ROLES}
        for e in self.evaluations:
            if e.error:
                counts["judge" if e.answer else "responder"].add(e.error)
            for juror_error in e.jury_errors:
                if juror_error:
                    counts["judge"].add(juror_error)
        for level in self.levels:
            for step, error in _parse_failures(level.failures):
                if step == "select_aspects":
                    counts["judge"].add(error)
                elif step == "rewrite" and error.startswith("proposal "):
                    counts["rewriter"].rejected += 1
                    counts["rewriter"].first_error = counts["rewriter"].first_error or error
                elif step == "rewrite":
                    counts["rewriter"].add(error)
        for example in self.icl_optimization:
            for round_ in example.rounds:
                if round_.error:
                    counts["judge" if round_.answer else "rewriter"].add(round_.error)
            if example.error and not example.rounds:  # the original answer could not be judged
                counts["judge"].add(example.error)
        return counts

    def failed_levels(self) -> dict[int, str]:
        """Search levels that failed, each with its first error.

        A level fails when nothing at it could be scored (every evaluation failed), or when it
        tried to rewrite and no new prompt from it was scored (every rewrite failed or was
        rejected, or every new prompt's evaluation failed). A level whose beam was all carried
        forward (already scoring high) and scored did not fail.
        """
        scored = self._levels_with_new_candidates()
        failed: dict[int, str] = {}
        for level in self.levels:
            if level.level == 0:
                continue  # the initial prompt's evaluation either works or stops the run
            if not level.level_rewards or (self._rewrote(level) and level.level not in scored):
                failed[level.level] = level.failures[0] if level.failures else "no new candidate"
        return failed

    def no_valid_candidate(self) -> bool:
        """Whether the search tried to improve the prompt and never produced a valid new one.

        The result is then the initial prompt by default, not on merit. False when nothing was
        tried (no level after 0, or every level carried an already high-scoring beam).
        """
        tried = any(self._rewrote(level) for level in self.levels if level.level > 0)
        return tried and not self._levels_with_new_candidates()

    def _levels_with_new_candidates(self) -> set[int]:
        return {c.level for c in self.candidates if c.level > 0 and not c.carried and c.rewards}

    @staticmethod
    def _rewrote(level: LevelRecord) -> bool:
        """Whether the level asked the rewriter for new prompts (it did unless all were carried)."""
        return not level.skipped or any(step == "rewrite" for step, _ in _parse_failures(level.failures))

    def reward_curve(self) -> list[float]:
        """Best mean reward of the beam after each level."""
        return [level.beam_mean_rewards[0] for level in self.levels if level.beam_mean_rewards]

    def save(self, path: str | Path) -> Path:
        """Write the artifact as indented UTF-8 JSON (atomically) and return the path."""
        return save_json_atomically(self, path)

    @classmethod
    def load(cls, path: str | Path) -> AlignmentArtifact:
        """Read an artifact written by :meth:`save`.

        Raises:
            ArtifactError: if the file is missing, not JSON, or not an artifact.
        """
        source = Path(path)
        data = read_json(source, "artifact file", ArtifactError)
        try:
            artifact = cls.model_validate(data)
        except ValidationError as exc:
            raise ArtifactError(f"not a drpo-agents artifact: {source}: {exc}") from exc
        if artifact.format_version > ARTIFACT_FORMAT_VERSION:
            raise ArtifactError(
                f"{source} has artifact format {artifact.format_version}; this version of drpo-agents "
                f"reads up to {ARTIFACT_FORMAT_VERSION}. Upgrade drpo-agents."
            )
        return artifact
