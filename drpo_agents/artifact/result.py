"""The result of an optimisation: the aligned prompt, its ICL examples and the whole search record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drpo_agents.artifact.records import (
    CandidateRecord,
    EvaluationRecord,
    GateDecision,
    ICLOptimizationRecord,
    ICLRetrievalRecord,
    LevelRecord,
    ParentRecord,
    RoleFailures,
    TokenUsage,
    ValidationRecord,
)
from drpo_agents.conversations import Turn
from drpo_agents.errors import ArtifactError
from drpo_agents.infra.json_files import read_json, save_json_atomically
from drpo_agents.json_types import JsonObject
from drpo_agents.rewards import (
    length_adjusted_rewards,
    length_slope,
    pearson,
    within_query_length_correlation,
)
from drpo_agents.schemas import ICLExample

ARTIFACT_FORMAT_VERSION = 2  # 2: level failures are records (1 kept "STEP ID: ERROR" lines; still read)


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
    parent: ParentRecord | None = Field(None, description="The earlier result this run started from, if any.")
    histories: dict[str, list[Turn]] = Field(
        default_factory=dict,
        description="The earlier turns of each training or validation query that is a conversation, by "
        "query id (records quote only the last turn).",
    )
    memory_runs: list[str] = Field(
        default_factory=list,
        description="Other runs whose critiques this run could recall: those its memory held as "
        "finished when it began (what to seed a memory with to reproduce it).",
    )
    candidates: list[CandidateRecord] = Field(default_factory=list)
    evaluations: list[EvaluationRecord] = Field(default_factory=list)
    levels: list[LevelRecord] = Field(default_factory=list)
    config: JsonObject = Field(default_factory=dict, description="The run's DRPOConfig, as JSON.")
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
    review: JsonObject | None = Field(
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
            for failure in level.failures:
                error = failure.error
                if failure.step == "select_aspects":
                    counts["judge"].add(error)
                elif failure.step == "rewrite" and error.startswith("proposal "):
                    counts["rewriter"].rejected += 1
                    counts["rewriter"].first_error = counts["rewriter"].first_error or error
                elif failure.step == "rewrite":
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
                failed[level.level] = str(level.failures[0]) if level.failures else "no new candidate"
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
        return not level.skipped or any(failure.step == "rewrite" for failure in level.failures)

    def lesson_sources(self) -> dict[str, int]:
        """How many lessons from critique memory the rewriter was shown, by the run each was learned
        in (this run's own id included), counted once per rewrite (its children share them)."""
        sources: dict[str, int] = {}
        rewrites = {(c.parent_id, c.level): c for c in self.candidates if c.lessons}
        for candidate in rewrites.values():
            for runs in candidate.lesson_runs or ["(unknown)"] * len(candidate.lessons):
                for run_id in runs.split("+"):  # a general lesson names every run it was learned in
                    sources[run_id] = sources.get(run_id, 0) + 1
        return sources

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
