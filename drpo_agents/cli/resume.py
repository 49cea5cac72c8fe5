"""``drpo resume``: continue a run from its checkpoint, with the changes a resume may make."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from drpo_agents.api import aresume
from drpo_agents.cli.build import CLIRecord, ModelSpecs, build_models, read_cli_record
from drpo_agents.cli.errors import NoValidCandidate, fail, resumable
from drpo_agents.cli.options import (
    AllowModelChangeOption,
    ExtendDepthOption,
    MaxConcurrencyOption,
    MaxCostOption,
    MaxTokensBudgetOption,
    RewriterOption,
)
from drpo_agents.cli.run import ask_reviewer, write_html_report
from drpo_agents.cli.summary import progress_bar, show_run
from drpo_agents.cli.typer_app import AsJson, BaseUrl, Judge, Quiet, Responder, app
from drpo_agents.errors import ResumeRefused
from drpo_agents.infra.calls import run_sync
from drpo_agents.infra.run_files import CLI_FILE, TRACE_FILE
from drpo_agents.run_record import RunRecord
from drpo_agents.run_spec import RunModels
from drpo_agents.tracing import JsonlTracer


@app.command("resume")
def resume_command(
    run_dir: Annotated[Path, typer.Argument(help="The run directory of a stopped or crashed run.")],
    checkpointer: Annotated[
        str | None, typer.Option(help="postgresql:// URL, if the run used PostgreSQL checkpoints.")
    ] = None,
    extend_depth: ExtendDepthOption = 0,
    max_tokens_budget: MaxTokensBudgetOption = None,
    max_cost: MaxCostOption = None,
    max_concurrency: MaxConcurrencyOption = None,
    responder: Responder = None,
    judge: Judge = None,
    rewriter: RewriterOption = None,
    base_url: BaseUrl = None,
    allow_model_change: AllowModelChangeOption = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Continue a run from its last checkpoint; calls that finished before the stop are not repeated.

    The models are the run's; --responder, --judge, --rewriter and --base-url change them, which
    needs --allow-model-change. A setting a resume cannot honour, another model than the run's, or
    levels a run has no queries for are refused in one line, and nothing is changed.
    """
    if not run_dir.is_dir():
        raise fail(f"no run directory {run_dir}")
    given: ModelSpecs = {"responder": responder, "judge": judge, "rewriter": rewriter, "jury": []}
    models, changed = _resume_models(run_dir, given, base_url)
    overrides = {
        name: value
        for name, value in (
            ("max_tokens_budget", max_tokens_budget),
            ("max_cost", max_cost),
            ("max_concurrency", max_concurrency),
        )
        if value is not None
    }
    started = time.perf_counter()
    record = RunRecord.load(run_dir)
    total = record.config.depth + extend_depth  # the run's own depth, not the default
    with resumable(run_dir, checkpointer) as checkpointed:
        with (
            progress_bar(total, not (quiet or as_json)) as on_progress,
            _saved_unless_refused(run_dir, changed, record.identities),
        ):
            artifact = run_sync(
                aresume(
                    run_dir,
                    responder=models.responder,
                    judge=models.judge,
                    rewriter=models.rewriter,
                    jury=models.jury,
                    checkpointer=checkpointer,
                    callbacks=[JsonlTracer(run_dir / TRACE_FILE)],  # appends to the run's trace
                    on_progress=checkpointed.watching(on_progress),
                    reviewer=ask_reviewer,
                    config_overrides=overrides,
                    extend_depth=extend_depth,
                    allow_model_change=allow_model_change,
                )
            )
        write_html_report(run_dir)  # a crash may have come before `drpo optimize` wrote it
        show_run(artifact, run_dir, time.perf_counter() - started, quiet, as_json)
        if artifact.no_valid_candidate():
            raise NoValidCandidate(artifact, run_dir)


def _resume_models(
    run_dir: Path, given: ModelSpecs, base_url: str | None
) -> tuple[RunModels, CLIRecord | None]:
    """The models a resume runs with: the run's (``cli.json``), with those given instead; and the
    changed record to save once the resume accepts the change (None when nothing changed)."""
    built = read_cli_record(run_dir)
    changed: CLIRecord = {
        "responder": given["responder"] or built["responder"],
        "judge": given["judge"] or built["judge"],
        "rewriter": given["rewriter"] or built["rewriter"],
        "jury": built["jury"],
        "base_url": base_url or built["base_url"],
    }
    return build_models(changed, changed["base_url"]), (changed if changed != built else None)


@contextmanager
def _saved_unless_refused(run_dir: Path, changed: CLIRecord | None, before: dict[str, str]) -> Iterator[None]:
    """Save the resume's models in ``cli.json`` once the run has taken them (``config.json`` names
    them, unlike ``before``): whatever ends the resume, but not when it was refused or a finished
    run did nothing."""

    def save() -> None:
        if changed is not None and RunRecord.load(run_dir).identities != before:
            (run_dir / CLI_FILE).write_text(json.dumps(changed, indent=2), encoding="utf-8")

    try:
        yield
    except ResumeRefused:
        raise
    except BaseException:
        save()
        raise
    save()
