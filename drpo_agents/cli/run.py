"""``drpo optimize``: the command that runs the search, with the review prompt and report ``resume`` shares."""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import replace
from pathlib import Path

from rich.panel import Panel

from drpo_agents.api import arun_optimization
from drpo_agents.cli.build import (
    build_models,
    load_config,
    model_specs,
)
from drpo_agents.cli.errors import EXIT_FAILED, NoValidCandidate, fail, resumable
from drpo_agents.cli.estimate import show_estimate
from drpo_agents.cli.options import (
    BeamSizeOption,
    CacheOption,
    CheckpointerOption,
    ConfigOption,
    DepthOption,
    EstimateOption,
    FromOption,
    GateOption,
    IclItersOption,
    IclOption,
    JudgeStructuredOutputOption,
    JuryOption,
    JurySizeOption,
    LengthNormalizationOption,
    MaxConcurrencyOption,
    MaxIclTokensOption,
    MaxPromptTokensOption,
    MemoryOption,
    NActionsOption,
    NoMemoryOption,
    OptimizeOptions,
    QueriesOption,
    QueriesPerStepOption,
    RedTeamValidationOption,
    ReviewOption,
    RewriterOption,
    RewriterStructuredOutputOption,
    RunDirOption,
    SeedOption,
    StructuredOutputOption,
    ValidationSizeOption,
)
from drpo_agents.cli.summary import progress_bar, show_before_after, show_run
from drpo_agents.cli.typer_app import AsJson, BaseUrl, Judge, Quiet, Responder, Sandbox, app, console
from drpo_agents.datasets import load_queries, load_training_queries
from drpo_agents.errors import ConfigError, DRPOError
from drpo_agents.icl_sets import load_icl_examples
from drpo_agents.infra.calls import run_sync
from drpo_agents.infra.run_files import (
    ARTIFACT_FILE,
    CHECKPOINT_FILE,
    CLI_FILE,
    JOURNAL_FILE,
    TRACE_FILE,
    private_folder,
)
from drpo_agents.memory.chroma_connection import check_location
from drpo_agents.models.registry import with_output_limit
from drpo_agents.run_spec import RunResources
from drpo_agents.search.records import ReviewAnswer, ReviewRequest
from drpo_agents.tracing import JsonlTracer
from drpo_agents.warm_start import starting_point, warm_started


@app.command("optimize")
def optimize_command(
    sandbox: Sandbox = False,
    responder: Responder = None,
    judge: Judge = None,
    rewriter: RewriterOption = None,
    jury: JuryOption = None,
    jury_size: JurySizeOption = None,
    base_url: BaseUrl = None,
    queries: QueriesOption = None,
    icl: IclOption = None,
    start_from: FromOption = None,
    config: ConfigOption = None,
    depth: DepthOption = None,
    beam_size: BeamSizeOption = None,
    n_actions: NActionsOption = None,
    queries_per_step: QueriesPerStepOption = None,
    icl_iters: IclItersOption = None,
    seed: SeedOption = None,
    validation_size: ValidationSizeOption = None,
    red_team_validation: RedTeamValidationOption = None,
    gate: GateOption = False,
    length_normalization: LengthNormalizationOption = False,
    max_prompt_tokens: MaxPromptTokensOption = None,
    max_icl_tokens: MaxIclTokensOption = None,
    max_concurrency: MaxConcurrencyOption = None,
    structured_output: StructuredOutputOption = None,
    judge_structured_output: JudgeStructuredOutputOption = None,
    rewriter_structured_output: RewriterStructuredOutputOption = None,
    cache: CacheOption = None,
    no_memory: NoMemoryOption = False,
    memory: MemoryOption = None,
    checkpointer: CheckpointerOption = None,
    run_dir: RunDirOption = None,
    review: ReviewOption = False,
    estimate: EstimateOption = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Optimize a system prompt with DRPO and write the artifact into a run directory."""
    run_optimize(OptimizeOptions(**locals()))  # every parameter, as given


def run_optimize(options: OptimizeOptions) -> None:
    """``drpo optimize`` with its flags gathered in ``options``."""
    o = options
    cfg = load_config(o.config, o.config_fields())
    try:
        training = load_queries(o.queries) if o.queries else load_training_queries()
        examples = load_icl_examples(o.icl) if o.icl else None
        start = starting_point(o.start_from) if o.start_from else None  # a bad source fails before any work
        if start is not None:
            cfg, examples = warm_started(cfg, examples, start)
        check_location(o.memory)
        if o.run_dir is not None:
            refuse_a_used_folder(o.run_dir)
    except DRPOError as exc:
        raise fail(str(exc)) from exc
    specs = model_specs(o.sandbox, o.responder, o.judge, o.rewriter, o.jury)
    if o.estimate:
        return show_estimate(cfg, training, examples, specs, o.as_json)
    models = build_models(specs, o.base_url)
    run_id = new_run_id()
    directory = o.run_dir or Path("runs") / run_id
    private_folder(directory)
    (directory / CLI_FILE).write_text(
        json.dumps({**specs, "base_url": o.base_url}, indent=2), encoding="utf-8"
    )
    resources = RunResources(
        run_dir=directory,
        run_id=run_id,
        memory=o.memory,  # default: the run's own, RUN_DIR/memory
        checkpointer=o.checkpointer,
        icl_examples=examples,
        callbacks=[JsonlTracer(directory / TRACE_FILE)],
        reviewer=ask_reviewer if o.review else None,
    )
    started = time.perf_counter()
    with resumable(directory, o.checkpointer) as checkpointed:
        with progress_bar(cfg.depth, not (o.quiet or o.as_json)) as on_progress:
            watched = replace(resources, on_progress=checkpointed.watching(on_progress))
            artifact = run_sync(arun_optimization(training, models, watched, cfg, o.start_from))
        write_html_report(directory)
        show_run(artifact, directory, time.perf_counter() - started, o.quiet, o.as_json)
        if artifact.no_valid_candidate():
            raise NoValidCandidate(artifact, directory)
        if not (o.quiet or o.as_json):
            responder_model = with_output_limit(models.responder, cfg.role_max_tokens["responder"])
            show_before_after(responder_model, cfg.initial_prompt, artifact)


def refuse_a_used_folder(run_dir: Path) -> None:
    """A new run never reuses a folder a run has written in: its files, trace and memory would mix
    with the old ones (and the old run's critiques would change the new one's result). A folder
    that holds only the settings of a run that stopped before its first checkpoint is reused.

    Raises:
        ConfigError: ``run_dir`` holds a run's work.
    """
    used = [
        name
        for name in (ARTIFACT_FILE, CHECKPOINT_FILE, JOURNAL_FILE, TRACE_FILE)
        if (run_dir / name).exists()
    ]
    if used:
        raise ConfigError(
            f"{run_dir} already holds a run ({used[0]}): continue it with drpo resume {run_dir}, "
            "or give another --run-dir"
        )


def new_run_id() -> str:
    """A CLI run's id: sortable by start time, and unique, so runs started in the same second (a
    batch of jobs) share no folder and, with one PostgreSQL, no checkpoint thread. A run's
    outcome does not depend on it."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def write_html_report(run_dir: Path) -> None:
    """Write the run's HTML report; a failure is a warning (the run itself succeeded)."""
    from drpo_agents.report import write_run_report

    try:
        write_run_report(run_dir)
    except (DRPOError, OSError) as exc:
        console.print(f"[yellow]warning:[/] could not write the HTML report: {exc}")


def ask_reviewer(request: ReviewRequest) -> ReviewAnswer:
    """Show the final prompt and read a decision from the terminal (or piped stdin)."""
    console.print(
        Panel(request.get("prompt", ""), title=f"Review the optimized prompt ({request.get('candidate_id')})")
    )
    console.print("Decide: [bold]a[/]pprove, [bold]r[/]eject (keep the initial prompt), or [bold]e[/]dit")
    for raw in iter(sys.stdin.readline, ""):
        answer = raw.strip().lower()
        if answer in {"a", "approve"}:
            return {"action": "approve"}
        if answer in {"r", "reject"}:
            return {"action": "reject"}
        if answer in {"e", "edit"}:
            console.print("Type the new prompt; end with a line containing only END")
            lines = []
            for line in iter(sys.stdin.readline, ""):
                if line.strip() == "END":
                    break
                lines.append(line.rstrip("\n"))
            return {"action": "edit", "prompt": "\n".join(lines)}
        console.print("Please answer a, r or e.")
    raise fail(
        "no review decision on stdin; the run is paused: drpo resume RUN_DIR after deciding", EXIT_FAILED
    )
