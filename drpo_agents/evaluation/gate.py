"""The gate: thresholds an evaluation must meet (mean score, win rates, no regression against the
deployed prompt) and the verdict that fails a CI job or keeps a candidate from promotion."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from drpo_agents.errors import ConfigError
from drpo_agents.evaluation.records import EvaluationReport, GateCheck, GateCheckName, GateVerdict
from drpo_agents.evaluation.statistics import paired_gain

DEPLOYED = "deployed"
"""The name of the deployed (baseline) artifact's setup in an evaluation."""
BASELINE_OPPONENTS = ("base", "urial")
"""The setups ``min_win_rate`` is checked against."""


class GateThresholds(BaseModel):
    """What an evaluation must show for its reference setup (the candidate) to pass.

    Attributes:
        fail_under: the reference's mean score (1-5) must be at least this.
        min_win_rate: its position-swapped win rate against the base and the URIAL-style
            baselines (those evaluated) must each be at least this.
        max_regression: against the deployed setup (``baseline=`` / ``--baseline``), the lower end
            of the paired bootstrap interval of the per-query gain must be at least ``-max_regression``:
            the data must rule out a loss larger than this. 0 asks for a gain shown beyond noise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_under: float | None = Field(None, ge=1, le=5)
    min_win_rate: float | None = Field(None, ge=0, le=1)
    max_regression: float | None = Field(None, ge=0, le=4)

    def any(self) -> bool:
        """Whether any threshold is set."""
        return any(v is not None for v in (self.fail_under, self.min_win_rate, self.max_regression))


def check_gate(report: EvaluationReport, thresholds: GateThresholds) -> GateVerdict:
    """The verdict of ``thresholds`` over ``report`` (its reference setup is the candidate).

    Raises:
        ConfigError: a threshold whose setup the report lacks (no reference, no base or URIAL-style
            setup for ``min_win_rate``, no deployed setup for ``max_regression``).
    """
    reference = report.reference
    if reference is None:
        raise ConfigError("a gate needs a reference setup (the artifact being evaluated)")
    names = {s.name for s in report.setups}
    checks: list[GateCheck] = []
    if thresholds.fail_under is not None:
        mean = report.setup(reference).overall.mean
        checks.append(_check("fail_under", f"{reference} mean", mean, thresholds.fail_under))
    if thresholds.min_win_rate is not None:
        opponents = [o for o in BASELINE_OPPONENTS if o in names]
        if not opponents:
            raise ConfigError("min_win_rate needs the base or URIAL-style setup in the evaluation")
        for opponent in opponents:
            rate = report.win_rate(opponent).win_rate.mean
            label = f"{reference} win rate vs {opponent}"
            checks.append(_check("min_win_rate", label, rate, thresholds.min_win_rate))
    gain = None
    if DEPLOYED in names:
        settings = report.bootstrap
        gain = paired_gain(
            report.records,
            reference,
            DEPLOYED,
            resamples=int(settings.get("resamples", 1000)),
            confidence=float(settings.get("confidence", 0.95)),
            seed=int(settings.get("seed", 0)),
        )
    if thresholds.max_regression is not None:
        if gain is None:
            raise ConfigError("max_regression needs the deployed artifact: pass baseline= (--baseline)")
        label = f"gain over {DEPLOYED} (lower end of its interval)"
        floor = -thresholds.max_regression or 0.0  # not -0.0, which prints as "-0.00"
        checks.append(_check("max_regression", label, gain.low, floor))
    return GateVerdict(checks=checks, gain=gain)


def _check(name: GateCheckName, label: str, value: float | None, threshold: float) -> GateCheck:
    # A tiny tolerance: a mean of exactly the threshold must not fail on float rounding.
    passed = value is not None and value >= threshold - 1e-9
    return GateCheck(check=name, label=label, value=value, threshold=threshold, passed=passed)
