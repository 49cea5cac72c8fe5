"""Alignment checks for an app's own test suite: assert that an artifact still passes the gate.

Example (pytest)::

    from drpo_agents.testing import assert_aligned

    def test_the_deployed_prompt_is_still_aligned():
        assert_aligned(
            "alignment/current",  # an artifact file or a run folder
            responder="openai:gpt-4o-mini",
            judge="openai:gpt-4o",
            fail_under=3.5,
            min_win_rate=0.5,
        )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drpo_agents.artifact import ArtifactSource
from drpo_agents.datasets import load_eval_queries
from drpo_agents.errors import ConfigError
from drpo_agents.evaluation import EvaluationOptions, EvaluationReport, GateThresholds, aevaluate
from drpo_agents.infra.calls import run_sync
from drpo_agents.run_spec import ChatModel, ResponderModel


async def aassert_aligned(
    artifact: ArtifactSource,
    *,
    responder: ResponderModel,
    judge: ChatModel,
    queries: Sequence[Any] | None = None,
    fail_under: float | None = None,
    min_win_rate: float | None = None,
    baseline: ArtifactSource | None = None,
    max_regression: float | None = None,
    options: EvaluationOptions | None = None,
) -> EvaluationReport:
    """Evaluate ``artifact`` on held-out ``queries`` and fail with the gate's verdict if it misses
    a threshold.

    Args:
        artifact: the artifact under test: an artifact, its file, a run folder or a dict.
        responder, judge: the model the artifact aligns, and the judge (instances or strings).
        queries: held-out queries (default: the packaged evaluation set).
        fail_under, min_win_rate, max_regression: the thresholds (see
            :class:`~drpo_agents.evaluation.GateThresholds`); at least one is needed.
        baseline: the deployed artifact that ``max_regression`` compares with.
        options: further evaluation settings (:class:`~drpo_agents.evaluation.EvaluationOptions`:
            embeddings, concurrency, callbacks, ...); the arguments above override its fields.

    Returns:
        The evaluation report (its ``gate`` passed), for further assertions.

    Raises:
        AssertionError: a check failed: the first line names each failed check and by how much,
            the rest is the Markdown summary.
        ConfigError: no threshold, or invalid evaluation options.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    report = await _gated_evaluation(
        artifact, responder, judge, queries, fail_under, min_win_rate, baseline, max_regression, options
    )
    return _passed(report)


async def _gated_evaluation(
    artifact: ArtifactSource,
    responder: ResponderModel,
    judge: ChatModel,
    queries: Sequence[Any] | None,
    fail_under: float | None,
    min_win_rate: float | None,
    baseline: ArtifactSource | None,
    max_regression: float | None,
    options: EvaluationOptions | None,
) -> EvaluationReport:
    gate = GateThresholds(fail_under=fail_under, min_win_rate=min_win_rate, max_regression=max_regression)
    if not gate.any():
        raise ConfigError("assert_aligned needs a threshold: fail_under, min_win_rate or max_regression")
    return await aevaluate(
        list(queries) if queries is not None else load_eval_queries(),
        options,
        responder=responder,
        judge=judge,
        artifact=artifact,
        baseline=baseline,
        gate=gate,
    )


def _passed(report: EvaluationReport) -> EvaluationReport:
    """``report`` if its gate passed; else the AssertionError, raised in the caller's frame."""
    __tracebackhide__ = True
    assert report.gate is not None  # a gate was given
    if not report.gate.passed:
        raise AssertionError(f"{report.gate.summary()}\n\n{report.to_markdown()}")
    return report


def assert_aligned(
    artifact: ArtifactSource,
    *,
    responder: ResponderModel,
    judge: ChatModel,
    queries: Sequence[Any] | None = None,
    fail_under: float | None = None,
    min_win_rate: float | None = None,
    baseline: ArtifactSource | None = None,
    max_regression: float | None = None,
    options: EvaluationOptions | None = None,
) -> EvaluationReport:
    """Blocking :func:`aassert_aligned`, with its parameters. The evaluation runs on drpo-agents'
    event loop; the assertion fails here, so pytest's traceback ends at the caller's line."""
    __tracebackhide__ = True
    report = run_sync(
        _gated_evaluation(
            artifact, responder, judge, queries, fail_under, min_win_rate, baseline, max_regression, options
        )
    )
    return _passed(report)
