"""One ICL example's optimisation: score its answer, rewrite it from the critique, keep the best.

The original answer is the initial best, and a rewrite replaces the best only when its mean
score is *strictly* higher. (The reference implementation replaced on ``>=``; with a judge that
ties often, that lets an equally-scored rewrite drift away from a hand-written answer for no
measured gain.) Each round rewrites the current best answer from its own critique; rewrites
that did not win are summarised in the next request so the rewriter tries something different.
A failed call (see :func:`~drpo_agents.errors.recoverable_errors`) ends the example's rounds, is
recorded, and keeps the best answer so far (at worst, the original).
"""

from __future__ import annotations

from typing import NotRequired, cast

from langchain_core.runnables import RunnableConfig
from typing_extensions import TypedDict

from drpo_agents.agents import AnswerRewriter, Judge
from drpo_agents.conversations import Turn
from drpo_agents.errors import error_text, recoverable_errors
from drpo_agents.infra.calls import CallPlan
from drpo_agents.schemas import AnswerEvaluation
from drpo_agents.search.records import Score, score_of
from drpo_agents.usage import UsageByRole, merge_usage, usage_of


class PreparedExample(TypedDict):
    """A validated seed example with its unique id: the payload of one ``icl_optimize_example`` task."""

    id: str
    query: str
    answer: str
    history: NotRequired[list[Turn]]  # an example conversation's earlier turns


class ICLRound(TypedDict):
    """One round as state: the JSON form of :class:`~drpo_agents.artifact.ICLRoundRecord`."""

    round: int
    answer: str
    scores: list[Score]
    reward: float | None
    accepted: bool
    analysis: str
    error: str | None


class ICLExampleRecord(TypedDict):
    """One example's result as state: the JSON form of :class:`~drpo_agents.artifact.ICLOptimizationRecord`."""

    example_id: str
    query: str
    history: NotRequired[list[Turn]]
    aspects: list[str]
    original_answer: str
    final_answer: str
    best_round: int
    initial_reward: float | None
    best_reward: float | None
    rounds: list[ICLRound]
    stop_reason: str
    error: str | None


def _round(
    number: int,
    answer: str,
    evaluation: AnswerEvaluation | None,
    *,
    accepted: bool,
    analysis: str,
    error: str | None = None,
) -> ICLRound:
    """A round's record; ``evaluation`` is None when the round failed before it was scored."""
    return {
        "round": number,
        "answer": answer,
        "scores": [score_of(s) for s in evaluation.scores] if evaluation is not None else [],
        "reward": evaluation.reward if evaluation is not None else None,
        "accepted": accepted,
        "analysis": analysis,
        "error": error,
    }


def _all_fives(evaluation: AnswerEvaluation) -> bool:
    return all(s.score == 5 for s in evaluation.scores)


def _weakest(evaluation: AnswerEvaluation) -> str:
    low = min(s.score for s in evaluation.scores)
    return ", ".join(f"{s.aspect} {s.score}/5" for s in evaluation.scores if s.score == low)


def _new_record(example: PreparedExample) -> ICLExampleRecord:
    """The record of an example before its first round: the original answer kept, nothing scored."""
    record: ICLExampleRecord = {
        "example_id": example["id"],
        "query": example["query"],
        "aspects": [],
        "original_answer": example["answer"],
        "final_answer": example["answer"],
        "best_round": 0,
        "initial_reward": None,
        "best_reward": None,
        "rounds": [],
        "stop_reason": "",
        "error": None,
    }
    if example.get("history"):
        record["history"] = example["history"]
    return record


def plan_optimize_example(
    judge: Judge,
    rewriter: AnswerRewriter,
    example: PreparedExample,
    *,
    num_iters: int,
    config: RunnableConfig,
) -> CallPlan[tuple[ICLExampleRecord, UsageByRole]]:
    """Select aspects, score, then rewrite-and-rescore up to ``num_iters`` times; keep the best.

    Returns the example's record and the usage of its calls.
    """
    query, original, history = example["query"], example["answer"], example.get("history", [])
    record = _new_record(example)
    usage: UsageByRole = {}
    cfg = cast(
        RunnableConfig,
        {**config, "metadata": {**config.get("metadata", {}), "drpo_icl_example_id": example["id"]}},
    )

    def finish(stop_reason: str, error: BaseException | None = None) -> tuple[ICLExampleRecord, UsageByRole]:
        record["stop_reason"] = stop_reason
        if error is not None:
            record["error"] = error_text(error)
        return record, usage

    try:
        selection = yield from judge.plan_select_aspects(query, config=cfg, history=history)
        usage = merge_usage(usage, usage_of("judge", selection.messages))
        aspects = selection.value.selected_aspects
        record["aspects"] = list(aspects)
        scored = yield from judge.plan_score(query, original, aspects, config=cfg, history=history)
    except recoverable_errors() as exc:
        # Without a score of the original nothing can be compared: keep it unchanged.
        return finish("the original answer could not be judged", exc)
    usage = merge_usage(usage, usage_of("judge", scored.messages))
    best_answer, best = original, scored.value
    record["initial_reward"] = record["best_reward"] = best.reward
    record["rounds"].append(_round(0, original, best, accepted=True, analysis="The original answer."))
    earlier: list[str] = []
    for number in range(1, num_iters + 1):
        if _all_fives(best):
            break
        new_answer, analysis = "", ""
        try:
            rewrite = yield from rewriter.plan_rewrite(
                query, best_answer, best, earlier_attempts=earlier, config=cfg, history=history
            )
            usage = merge_usage(usage, usage_of("rewriter", rewrite.messages))
            new_answer, analysis = rewrite.value.new_answer, rewrite.value.analysis
            rescored = yield from judge.plan_score(query, new_answer, aspects, config=cfg, history=history)
        except recoverable_errors() as exc:
            record["rounds"].append(
                _round(number, new_answer, None, accepted=False, analysis=analysis, error=error_text(exc))
            )
            return finish(f"round {number} failed; kept the best answer so far", exc)
        usage = merge_usage(usage, usage_of("judge", rescored.messages))
        evaluation = rescored.value
        accepted = evaluation.reward > best.reward  # strictly better: ties keep the current best
        record["rounds"].append(_round(number, new_answer, evaluation, accepted=accepted, analysis=analysis))
        if accepted:
            best_answer, best = new_answer, evaluation
            record["final_answer"], record["best_round"] = new_answer, number
            record["best_reward"] = evaluation.reward
            earlier = []  # a new answer to improve: earlier attempts were at the old one
        else:
            earlier.append(
                f"attempt {number} scored {evaluation.reward:.2f}/5, not above the current "
                f"{best.reward:.2f}/5 (its weakest: {_weakest(evaluation)})"
            )
    if _all_fives(best):
        return finish("every aspect scored 5")
    return finish(f"ran {num_iters} round(s)")
