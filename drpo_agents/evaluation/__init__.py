"""Evaluation harness: answer held-out queries under several alignment setups and judge them.

Setups (each a system prompt plus optional ICL examples, :class:`EvaluationSetup`):

* ``base``: ``"You are a helpful assistant."``, no examples;
* ``urial``: a URIAL-style baseline: our fixed hand-written system prompt plus three fixed
  stylistic ICL examples (``data/urial_style.json``), the same for every query;
* ``drpo``: an :class:`AlignmentArtifact`'s prompt with its ICL examples retrieved per query;
* any extra named prompts (for instance read from files with :func:`prompt_setup_from_file`).

Every answer is scored 1-5 with a rationale on six fixed aspects (:data:`EVAL_ASPECTS`). The
reference setup (``drpo`` by default) is also compared pairwise with every other setup, judged
twice with the answers' positions swapped: it *wins* a query only if both orders say it wins,
*loses* only if both say it loses; anything else (a tie in either order, or inconsistent
verdicts, a sign of position bias) is a tie. The win rate is wins / judged queries, so ties
count as non-wins; loss and tie rates are reported beside it.

Means and win rates come with percentile bootstrap confidence intervals over queries (seeded,
stdlib ``random`` only). Failed calls are recorded and left out of the statistics.

The gate (:mod:`~drpo_agents.evaluation.gate`): ``gate=GateThresholds(fail_under=..., min_win_rate=...,
max_regression=...)`` checks the reference's mean, its win rates against the baselines and, with
``baseline=`` (the deployed artifact, setup ``deployed``), the paired bootstrap interval of its gain;
the report's ``gate`` holds the verdict (``drpo evaluate --fail-under ...`` exits 1 on a failure).

Held-out rule: the harness refuses (``ConfigError``) evaluation queries that the artifact was
optimised on (queries of its recorded evaluations, or of its ICL examples; the baseline's too), compared as
whitespace- and case-normalised text, unless ``allow_overlap=True``.

Modules: :mod:`~drpo_agents.evaluation.setups` (the setups and baselines),
:mod:`~drpo_agents.evaluation.held_out` (the held-out rule), :mod:`~drpo_agents.evaluation.records`
(the report, its records and Markdown), :mod:`~drpo_agents.evaluation.statistics` (pure statistics),
:mod:`~drpo_agents.evaluation.options` (:class:`EvaluationOptions`),
:mod:`~drpo_agents.evaluation.harness` (the answer and compare plans) and
:mod:`~drpo_agents.evaluation.runner` (:func:`evaluate`, :func:`aevaluate`).
"""

from drpo_agents.evaluation.gate import (
    DEPLOYED,
    GateThresholds,
    check_gate,
)
from drpo_agents.evaluation.held_out import (
    check_held_out,
    training_queries,
)
from drpo_agents.evaluation.options import (
    EvaluationKeywords,
    EvaluationOptions,
)
from drpo_agents.evaluation.records import (
    AnswerRecord,
    BootstrapSettings,
    Estimate,
    EvaluationReport,
    GateCheck,
    GateVerdict,
    Outcome,
    PairwiseRecord,
    QueryRecord,
    SetupResult,
    Winner,
    WinRate,
)
from drpo_agents.evaluation.runner import (
    aevaluate,
    evaluate,
)
from drpo_agents.evaluation.setups import (
    BASE_PROMPT,
    EVAL_ASPECTS,
    URIAL_PROMPT,
    EvaluationSetup,
    FixedICLRetriever,
    artifact_setup,
    base_setup,
    load_urial_examples,
    prompt_setup_from_file,
    urial_setup,
)
from drpo_agents.evaluation.statistics import (
    estimate,
    paired_gain,
    pairwise_outcome,
    summarize,
    verdicts_agree,
)

__all__ = [
    "BASE_PROMPT",
    "DEPLOYED",
    "EVAL_ASPECTS",
    "URIAL_PROMPT",
    "AnswerRecord",
    "BootstrapSettings",
    "Estimate",
    "EvaluationKeywords",
    "EvaluationOptions",
    "EvaluationReport",
    "EvaluationSetup",
    "FixedICLRetriever",
    "GateCheck",
    "GateThresholds",
    "GateVerdict",
    "Outcome",
    "PairwiseRecord",
    "QueryRecord",
    "SetupResult",
    "WinRate",
    "Winner",
    "aevaluate",
    "artifact_setup",
    "base_setup",
    "check_gate",
    "check_held_out",
    "estimate",
    "evaluate",
    "load_urial_examples",
    "paired_gain",
    "pairwise_outcome",
    "prompt_setup_from_file",
    "summarize",
    "training_queries",
    "urial_setup",
    "verdicts_agree",
]
