"""``drpo evaluate`` as a gate: its threshold options, and the report written and shown, failing
the command when a check fails."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from drpo_agents.cli.errors import EXIT_FAILED, fail
from drpo_agents.evaluation import EvaluationReport, GateThresholds
from drpo_agents.infra.run_files import EVALUATION_FILE, EVALUATION_MARKDOWN_FILE

FailUnderOption = Annotated[
    float | None, typer.Option(min=1, max=5, help="Gate: fail if the artifact's mean score is under this.")
]
MinWinRateOption = Annotated[
    float | None,
    typer.Option(min=0, max=1, help="Gate: fail if its win rate against base or URIAL-style is under this."),
]
BaselineOption = Annotated[
    Path | None,
    typer.Option(help="The deployed artifact (file or run folder), evaluated beside it as 'deployed'."),
]
MaxRegressionOption = Annotated[
    float | None,
    typer.Option(
        help="Gate: fail unless the gain over --baseline is surely above minus this (paired bootstrap)."
    ),
]
MarkdownOption = Annotated[
    Path | None,
    typer.Option(help="Also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY, a PR comment)."),
]


def gate_thresholds(
    fail_under: float | None, min_win_rate: float | None, max_regression: float | None, baseline: Path | None
) -> GateThresholds | None:
    """The gate the options ask for (None: no threshold given), checked before any model call."""
    if max_regression is not None and baseline is None:
        raise fail("--max-regression compares with the deployed artifact: pass --baseline ARTIFACT too")
    gate = GateThresholds(fail_under=fail_under, min_win_rate=min_win_rate, max_regression=max_regression)
    return gate if gate.any() else None


def show_evaluation(
    report: EvaluationReport, folder: Path, markdown: Path | None, quiet: bool, as_json: bool
) -> None:
    """Save the report (JSON and Markdown, plus ``markdown`` if given), print it, and end the command
    with exit 1 and the one-line verdict when the gate failed."""
    report.save(folder / EVALUATION_FILE)
    text = report.to_markdown()
    (folder / EVALUATION_MARKDOWN_FILE).write_text(text, encoding="utf-8")
    if markdown is not None:
        try:
            markdown.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot write {markdown}: {exc.strerror or exc}", EXIT_FAILED) from exc
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:  # the Markdown as is: a terminal wraps it, a file keeps its rows
        sys.stdout.write(f"{folder / EVALUATION_FILE}\n" if quiet else text + "\n")
    if report.gate is not None and not report.gate.passed:
        raise fail(report.gate.summary(), EXIT_FAILED)
