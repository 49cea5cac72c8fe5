"""Evaluation statistics (pure): bootstrap means, position-swapped pairwise outcomes, per-setup summaries."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

from drpo_agents.evaluation.records import (
    AnswerRecord,
    Estimate,
    Outcome,
    QueryRecord,
    SetupResult,
    Winner,
    WinRate,
)
from drpo_agents.evaluation.setups import EVAL_ASPECTS, EvaluationSetup
from drpo_agents.rewards import bootstrap_ci


def estimate(
    values: Sequence[float], *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean of ``values`` with its bootstrap interval (all ``None`` for no values)."""
    if not values:
        return Estimate(mean=None, low=None, high=None, n=0)
    low, high = bootstrap_ci(values, resamples=resamples, confidence=confidence, seed=seed)
    return Estimate(mean=sum(values) / len(values), low=low, high=high, n=len(values))


def _as_reference(verdict: Winner, reference_is: Literal["A", "B"]) -> Outcome:
    if verdict == "tie":
        return "tie"
    return "win" if verdict == reference_is else "loss"


def verdicts_agree(reference_first: Winner, reference_second: Winner) -> bool:
    """Whether two position-swapped verdicts say the same thing about the reference."""
    return _as_reference(reference_first, "A") == _as_reference(reference_second, "B")


def pairwise_outcome(reference_first: Winner, reference_second: Winner) -> Outcome:
    """The reference's outcome from two verdicts with swapped positions.

    ``reference_first`` is the verdict when the reference was answer A, ``reference_second``
    when it was answer B. Win only if both orders prefer the reference, loss only if both
    prefer the opponent; a tie in either order, or disagreeing orders, is a tie.
    """
    first = _as_reference(reference_first, "A")
    return first if verdicts_agree(reference_first, reference_second) else "tie"


def summarize(
    records: Sequence[QueryRecord],
    setups: Sequence[EvaluationSetup],
    *,
    aspects: Sequence[str] = EVAL_ASPECTS,
    reference: str | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[list[SetupResult], list[WinRate]]:
    """Per-setup means (per aspect and overall) and the reference's win rates, from records."""
    measure = partial(estimate, resamples=resamples, confidence=confidence, seed=seed)
    results: list[SetupResult] = []
    for setup in setups:
        answers = [a for r in records if (a := r.answer_of(setup.name)) is not None]
        scored = [a for a in answers if a.error is None and a.mean is not None]
        per_aspect: dict[str, Estimate] = {}
        for aspect in aspects:
            key = aspect.casefold()
            values = [float(s.score) for a in scored for s in a.scores if s.aspect.casefold() == key]
            per_aspect[aspect] = measure(values)
        kinds = {r.kind for r in records}
        by_kind = (
            {
                kind: measure(
                    [
                        a.mean
                        for r in records
                        if r.kind == kind
                        if (a := r.answer_of(setup.name)) and a.mean is not None and a.error is None
                    ]
                )
                for kind in sorted(kinds)
            }
            if "multi-turn" in kinds
            else {}
        )
        turned = [a.turns for a in scored if a.turns]
        per_turn = [
            measure([mean for t in turned if len(t) > n and (mean := t[n].mean) is not None])
            for n in range(max((len(t) for t in turned), default=0))
        ]
        results.append(
            SetupResult(
                name=setup.name,
                system_prompt=setup.system_prompt,
                icl_k=setup.icl_k,
                aspects=per_aspect,
                overall=measure([a.mean for a in scored if a.mean is not None]),
                failures=len(answers) - len(scored),
                by_kind=by_kind,
                per_turn=per_turn,
            )
        )
    rates: list[WinRate] = []
    if reference is not None:
        for setup in setups:
            if setup.name == reference:
                continue
            pairs = [p for r in records for p in r.pairwise if p.opponent == setup.name]
            judged = [p for p in pairs if p.error is None and p.outcome is not None]
            outcomes = [p.outcome for p in judged]
            n = len(outcomes)
            rates.append(
                WinRate(
                    reference=reference,
                    opponent=setup.name,
                    wins=outcomes.count("win"),
                    ties=outcomes.count("tie"),
                    losses=outcomes.count("loss"),
                    inconsistent=sum(1 for p in judged if p.consistent is False),
                    failures=len(pairs) - n,
                    win_rate=measure([1.0 if o == "win" else 0.0 for o in outcomes]),
                    tie_rate=outcomes.count("tie") / n if n else None,
                    loss_rate=outcomes.count("loss") / n if n else None,
                )
            )
    return results, rates


def paired_gain(
    records: Sequence[QueryRecord],
    setup: str,
    against: str,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean per-query gain of ``setup``'s score over ``against``'s, with a paired bootstrap interval
    (queries resampled with both answers kept together); queries either failed on are left out."""
    gains: list[float] = []
    for record in records:
        mine, theirs = _scored(record.answer_of(setup)), _scored(record.answer_of(against))
        if mine is not None and theirs is not None:
            gains.append(mine - theirs)
    return estimate(gains, resamples=resamples, confidence=confidence, seed=seed)


def _scored(answer: AnswerRecord | None) -> float | None:
    return answer.mean if answer is not None and answer.error is None else None
