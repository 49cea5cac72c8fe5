"""The evaluation report and its records: per-query answers and comparisons, summaries, Markdown."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from drpo_agents.artifact import TokenUsage
from drpo_agents.errors import ArtifactError
from drpo_agents.evaluation.conversation_tables import conversation_tables
from drpo_agents.infra.json_files import read_json, save_json_atomically
from drpo_agents.schemas import AspectScore

Winner = Literal["A", "B", "tie"]
Outcome = Literal["win", "loss", "tie"]


class BootstrapSettings(TypedDict, total=False):
    """How the report's intervals were computed: a percentile bootstrap over ``unit`` (queries)."""

    resamples: int
    confidence: float
    seed: int
    unit: str


class Estimate(BaseModel):
    """A mean with its bootstrap confidence interval (``None`` when there were no values)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def format(self, digits: int = 2) -> str:
        """``3.42 [3.10, 3.71]`` (or ``n/a``)."""
        if self.mean is None or self.low is None or self.high is None:
            return "n/a"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


class TurnRecord(BaseModel):
    """One reply of a setup in a conversation it answered turn by turn, and its scores."""

    answer: str = ""
    scores: list[AspectScore] = Field(default_factory=list)
    mean: float | None = None


class AnswerRecord(BaseModel):
    """One setup's answer to one query and its aspect scores. For a conversation given as the
    user's turns, ``turns`` holds each reply, ``answer`` the whole conversation, ``scores`` every
    turn's and ``mean`` the mean of the turns' means."""

    setup: str
    answer: str = ""
    scores: list[AspectScore] = Field(default_factory=list)
    mean: float | None = None
    error: str | None = None
    turns: list[TurnRecord] | None = None


class PairwiseRecord(BaseModel):
    """The reference setup against one opponent on one query, judged in both orders.

    ``reference_first`` is the raw verdict with the reference shown as answer A,
    ``reference_second`` with it shown as answer B; ``outcome`` is from the reference's side.
    """

    opponent: str
    reference_first: Winner | None = None
    reference_second: Winner | None = None
    outcome: Outcome | None = None
    consistent: bool | None = None
    error: str | None = None


class QueryRecord(BaseModel):
    """Everything judged for one evaluation query."""

    query_id: str
    query: str
    kind: Literal["single-turn", "multi-turn"] = "single-turn"
    answers: list[AnswerRecord] = Field(default_factory=list)
    pairwise: list[PairwiseRecord] = Field(default_factory=list)

    def answer_of(self, setup: str) -> AnswerRecord | None:
        """This query's record for ``setup``, if any."""
        return next((a for a in self.answers if a.setup == setup), None)


class SetupResult(BaseModel):
    """Per-aspect and overall mean scores of one setup over the queries it answered."""

    name: str
    system_prompt: str
    icl_k: int = 0
    aspects: dict[str, Estimate]
    overall: Estimate
    failures: int = 0
    by_kind: dict[str, Estimate] = Field(
        default_factory=dict, description="Overall mean over single-turn and over multi-turn queries apart."
    )
    per_turn: list[Estimate] = Field(
        default_factory=list,
        description="Mean reply score at each turn of the conversations answered turn by turn.",
    )


class WinRate(BaseModel):
    """The reference setup's pairwise record against one opponent (position-swapped)."""

    reference: str
    opponent: str
    wins: int
    ties: int
    losses: int
    inconsistent: int = Field(0, description="Queries whose two verdicts disagreed (counted as ties).")
    failures: int = 0
    win_rate: Estimate
    tie_rate: float | None = None
    loss_rate: float | None = None


GateCheckName = Literal["fail_under", "min_win_rate", "max_regression"]


class GateCheck(BaseModel):
    """One check of a gate: what was measured against which threshold, and by how much it missed."""

    check: GateCheckName
    label: str = Field(..., description='What was measured, e.g. "drpo mean" or "drpo win rate vs base".')
    value: float | None = Field(..., description="The measured value (None: nothing was scored).")
    threshold: float
    passed: bool

    def shortfall(self) -> float | None:
        """How far the value is under its threshold (None when it passed or there is no value)."""
        return None if self.passed or self.value is None else self.threshold - self.value

    def describe(self) -> str:
        """``drpo mean 2.76 is under 3.00 by 0.24`` (or that it passed)."""
        if self.value is None:
            return f"{self.label}: nothing was scored (needs {self.threshold:.2f})"
        verb = "is under" if not self.passed else "meets"
        gap = f" by {self.shortfall():.2f}" if not self.passed else ""
        return f"{self.label} {self.value:.2f} {verb} {self.threshold:.2f}{gap}"


class GateVerdict(BaseModel):
    """The gate's decision over one evaluation report: every check, and the paired gain over the
    deployed setup when one was evaluated."""

    checks: list[GateCheck]
    gain: Estimate | None = Field(
        None, description="Mean per-query gain of the reference over the deployed setup, paired bootstrap."
    )

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(c.passed for c in self.checks)

    def summary(self) -> str:
        """One line: ``gate passed (3 checks)`` or ``gate failed: <each failed check>``."""
        failed = [c.describe() for c in self.checks if not c.passed]
        if not failed:
            return f"gate passed ({len(self.checks)} check{'s' * (len(self.checks) != 1)})"
        return "gate failed: " + "; ".join(failed)

    def to_markdown(self) -> str:
        """The verdict as a heading and a table, fit for a CI job summary or a pull-request comment."""
        if not self.checks:
            lines = ["## Against the deployed prompt"]
        else:
            lines = [
                f"## DRPO gate: {'passed' if self.passed else 'FAILED'}",
                "",
                "| check | value | threshold | result |",
                "|---|---|---|---|",
            ]
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.2f}"
            lines.append(
                f"| {c.label} | {value} | {c.threshold:.2f} | {'pass' if c.passed else '**fail**'} |"
            )
        if self.gain is not None:
            lines += ["", f"Gain over the deployed prompt (per query, paired): {self.gain.format()}"]
        return "\n".join(lines) + "\n"


class EvaluationReport(BaseModel):
    """The harness's result: summary tables, bootstrap intervals and every per-query record."""

    model_config = ConfigDict(extra="ignore")

    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    aspects: list[str]
    reference: str | None = None
    setups: list[SetupResult]
    win_rates: list[WinRate] = Field(default_factory=list)
    records: list[QueryRecord] = Field(default_factory=list)
    bootstrap: BootstrapSettings = Field(
        default_factory=lambda: BootstrapSettings(), description="resamples, confidence, seed."
    )
    models: dict[str, str] = Field(default_factory=dict)
    usage: dict[str, TokenUsage] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    gate: GateVerdict | None = Field(None, description="The gate's verdict, when thresholds were given.")

    def setup(self, name: str) -> SetupResult:
        """The summary of the setup called ``name``."""
        for result in self.setups:
            if result.name == name:
                return result
        raise KeyError(f"no setup {name!r} in this report")

    def win_rate(self, opponent: str) -> WinRate:
        """The reference's pairwise record against ``opponent``."""
        for rate in self.win_rates:
            if rate.opponent == opponent:
                return rate
        raise KeyError(f"no pairwise comparison with {opponent!r} in this report")

    def to_markdown(self) -> str:
        """The summary as Markdown tables (means with 95% intervals, then win rates)."""
        level = round(100 * float(self.bootstrap.get("confidence", 0.95)))
        lines = [] if self.gate is None else [self.gate.to_markdown()]
        lines += [
            f"### Mean scores (1-5) with {level}% bootstrap intervals over {len(self.records)} queries",
            "",
            "| setup | " + " | ".join(self.aspects) + " | overall |",
            "|---" * (len(self.aspects) + 2) + "|",
        ]
        for result in self.setups:
            cells = [result.aspects[a].format() for a in self.aspects] + [f"**{result.overall.format()}**"]
            lines.append(f"| {result.name} | " + " | ".join(cells) + " |")
        lines += conversation_tables(self.records, self.setups)
        if self.win_rates:
            lines += [
                "",
                f"### Pairwise: {self.reference} against each setup (both orders judged; a win needs both)",
                "",
                "| opponent | wins | ties | losses | inconsistent | win rate |",
                "|---|---|---|---|---|---|",
            ]
            for rate in self.win_rates:
                lines.append(
                    f"| {rate.opponent} | {rate.wins} | {rate.ties} | {rate.losses} | {rate.inconsistent} "
                    f"| {rate.win_rate.format()} |"
                )
        if self.notes:
            lines += ["", *[f"> {note}" for note in self.notes]]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the report as indented UTF-8 JSON (atomically) and return the path."""
        return save_json_atomically(self, path)

    @classmethod
    def load(cls, path: str | Path) -> EvaluationReport:
        """Read a report written by :meth:`save`.

        Raises:
            ArtifactError: if the file is missing, not JSON, or not a report.
        """
        source = Path(path)
        data = read_json(source, "report file", ArtifactError)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ArtifactError(f"not an evaluation report: {source}: {exc}") from exc
