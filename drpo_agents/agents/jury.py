"""A jury's verdict on one answer: each juror's scores combined per aspect by median."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from drpo_agents.errors import recoverable_errors
from drpo_agents.rewards import aggregate_jury, jury_disagreement
from drpo_agents.schemas import AnswerEvaluation
from drpo_agents.structured import StructuredResult


@dataclass
class JuryVerdict:
    """A jury's judgement of one answer.

    ``evaluation`` shows each aspect's median score (a half-point median rounded down, so the
    rewriter sees the weakness) with the rationale of a juror at the median; ``reward`` is the
    mean of the exact medians. ``jurors`` holds each juror's own evaluation (None if it failed).
    """

    evaluation: AnswerEvaluation
    reward: float
    jurors: list[AnswerEvaluation | None]
    errors: list[str | None]
    disagreement: float | None
    messages: dict[str, list[AIMessage]] = field(default_factory=dict)  # usage key -> raw replies


def combine_jurors(
    model: BaseChatModel,
    juror_models: Sequence[BaseChatModel],
    outcomes: Sequence[StructuredResult[AnswerEvaluation] | BaseException],
    ordered: Sequence[str],
) -> JuryVerdict:
    """The verdict from each juror's outcome (a scored evaluation or the error it raised).

    ``model`` is the judge's own model: its replies count as ``judge`` usage, other jurors' as
    ``jury``. Scores come back in the order of ``ordered``. A failed juror is left out and its
    error recorded; if every juror failed, the last error is raised with every reply attached.
    """
    jurors: list[AnswerEvaluation | None] = []
    errors: list[str | None] = []
    messages: dict[str, list[AIMessage]] = {}
    last_error: BaseException | None = None
    for index, (juror, outcome) in enumerate(zip(juror_models, outcomes, strict=True)):
        usage_key = "judge" if index == 0 or juror is model else "jury"
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, recoverable_errors()):
                raise outcome  # our own errors and graph interrupts are not a juror's failure
            messages.setdefault(usage_key, []).extend(getattr(outcome, "messages", []))
            jurors.append(None)
            errors.append(f"{type(outcome).__name__}: {outcome}")
            last_error = outcome
            continue
        messages.setdefault(usage_key, []).extend(outcome.messages)
        by_name = {s.aspect.casefold(): s for s in outcome.value.scores}
        jurors.append(AnswerEvaluation(scores=[by_name[a.casefold()] for a in ordered]))
        errors.append(None)
    done = [j for j in jurors if j is not None]
    if not done:
        assert last_error is not None
        last_error.messages = [m for ms in messages.values() for m in ms]  # type: ignore[attr-defined]
        raise last_error
    if len(done) == 1:
        evaluation = done[0]
        return JuryVerdict(evaluation, evaluation.reward, jurors, errors, None, messages)
    verdicts = [{s.aspect: float(s.score) for s in j.scores} for j in done]
    medians = aggregate_jury(verdicts)
    scores = []
    for aspect, median in medians.items():
        # The rationale of the juror closest to the median explains the aggregated score.
        closest = min(done, key=lambda j: abs((j.score_of(aspect) or 0) - median))
        source = next(s for s in closest.scores if s.aspect == aspect)
        scores.append(source.model_copy(update={"score": int(median)}))
    reward = sum(medians.values()) / len(medians)
    return JuryVerdict(
        AnswerEvaluation(scores=scores), reward, jurors, errors, jury_disagreement(verdicts), messages
    )
