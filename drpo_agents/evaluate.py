"""Deprecated home of the evaluation harness, kept for imports: use :mod:`drpo_agents.evaluation`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from langchain_core.runnables import RunnableConfig

from drpo_agents.agents import Judge
from drpo_agents.evaluation import *  # noqa: F403 (the public names, re-exported)
from drpo_agents.evaluation import EVAL_ASPECTS
from drpo_agents.evaluation import __all__ as _evaluation_names
from drpo_agents.infra.calls import CallPlan
from drpo_agents.schemas import PairwiseVerdict
from drpo_agents.structured import StructuredResult


def plan_pairwise(
    judge: Judge,
    query: str,
    answer_a: str,
    answer_b: str,
    aspects: Sequence[str] = EVAL_ASPECTS,
    *,
    config: RunnableConfig | None = None,
) -> CallPlan[StructuredResult[PairwiseVerdict]]:
    """Deprecated: use :meth:`Judge.plan_pairwise <drpo_agents.agents.Judge.plan_pairwise>`."""
    warnings.warn(
        "drpo_agents.evaluate.plan_pairwise is deprecated; use Judge.plan_pairwise",
        DeprecationWarning,
        stacklevel=2,
    )
    return judge.plan_pairwise(query, answer_a, answer_b, aspects, config=config)


__all__ = [*_evaluation_names, "plan_pairwise"]
