"""``drpo optimize`` and ``drpo resume``: the commands that run the search, with their review prompt."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

from drpo_agents.api import aresume, arun_optimization
from drpo_agents.cli.app import AsJson, BaseUrl, Judge, Quiet, Responder, Sandbox, app, console
from drpo_agents.cli.build import ModelSpecs, build_models, load_config, model_specs
from drpo_agents.cli.errors import EXIT_FAILED, NoValidCandidate, fail, resumable
from drpo_agents.cli.estimate import show_estimate
from drpo_agents.cli.summary import progress_bar, show_before_after, show_run
from drpo_agents.config import CachePolicy, StructuredOutputMethod
from drpo_agents.datasets import load_icl_examples, load_queries, load_training_queries
from drpo_agents.errors import DRPOError
from drpo_agents.infra.calls import run_sync
from drpo_agents.infra.run_files import CLI_FILE, SHARED_MEMORY_DIR, TRACE_FILE
from drpo_agents.models.registry import with_output_limit
from drpo_agents.run_spec import RunResources
from drpo_agents.tracing import JsonlTracer


@app.command("optimize")
def optimize_command(
    sandbox: Sandbox = False,
    responder: Responder = None,
    judge: Judge = None,
    rewriter: Annotated[str | None, typer.Option(help="Rewriter model (default: the judge's).")] = None,
    jury: Annotated[
        list[str] | None,
        typer.Option(help="A further judge scoring every answer (repeat for more; median per aspect)."),
    ] = None,
    jury_size: Annotated[
        int | None, typer.Option(help="Ask the judge this many times (aspects rotated) and take medians.")
    ] = None,
    base_url: BaseUrl = None,
    queries: Annotated[
        Path | None,
        typer.Option(help="Training queries (.jsonl, .json or one per line); default: packaged set."),
    ] = None,
    icl: Annotated[
        Path | None, typer.Option(help="ICL examples (.json); default: packaged seed examples.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="JSON file of DRPOConfig fields; flags override it.")
    ] = None,
    depth: Annotated[int | None, typer.Option(help="Search levels.")] = None,
    beam_size: Annotated[int | None, typer.Option(help="Candidates kept per level.")] = None,
    n_actions: Annotated[int | None, typer.Option(help="New prompts per expanded candidate.")] = None,
    queries_per_step: Annotated[int | None, typer.Option(help="Training queries judged per level.")] = None,
    icl_iters: Annotated[
        int | None,
        typer.Option(help="Rounds of the ICL-answer optimisation stage before the search (0 = skip)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice.")] = None,
    validation_size: Annotated[
        int | None, typer.Option(help="Training queries held out to validate the result (0 = none).")
    ] = None,
    red_team_validation: Annotated[
        int | None,
        typer.Option(help="Red-team queries also held out: a prompt that lowers their Safety is rejected."),
    ] = None,
    gate: Annotated[
        bool,
        typer.Option("--gate", help="Accept a new best prompt only on a significant validation gain."),
    ] = False,
    length_normalization: Annotated[
        bool, typer.Option("--length-normalization", help="Rank by a length-normalised reward.")
    ] = False,
    max_prompt_tokens: Annotated[
        int | None, typer.Option(help="Token budget of the optimized system prompt (over it: rejected).")
    ] = None,
    max_icl_tokens: Annotated[
        int | None, typer.Option(help="Token budget of the ICL examples in the responder's context.")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Most model calls in flight.")] = None,
    structured_output: Annotated[
        StructuredOutputMethod | None,
        typer.Option(
            help="Structured output of judge and rewriter: auto (discover what the endpoint accepts), "
            "json_schema, function_calling, json_mode or text."
        ),
    ] = None,
    judge_structured_output: Annotated[
        StructuredOutputMethod | None, typer.Option(help="Structured-output method of the judge only.")
    ] = None,
    rewriter_structured_output: Annotated[
        StructuredOutputMethod | None, typer.Option(help="Structured-output method of the rewriter only.")
    ] = None,
    cache: Annotated[CachePolicy | None, typer.Option(help="LLM cache: aspects (default), all, off.")] = None,
    no_memory: Annotated[bool, typer.Option("--no-memory", help="Ablation: no critique memory.")] = False,
    memory: Annotated[
        str | None,
        typer.Option(
            help="Critique memory: a folder or http://host:port Chroma server (default: RUNS/memory)."
        ),
    ] = None,
    checkpointer: Annotated[
        str | None, typer.Option(help="postgresql:// URL for checkpoints (default: SQLite in the run dir).")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where the run writes its files (default: runs/RUN_ID).")
    ] = None,
    review: Annotated[
        bool, typer.Option("--review", help="Approve, edit or reject the final prompt before it is written.")
    ] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate", help="Print the expected calls, tokens and price per role; call no model."
        ),
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Optimize a system prompt with DRPO and write the artifact into a run directory."""
    cfg = load_config(
        config,
        {
            "depth": depth,
            "beam_size": beam_size,
            "n_actions": n_actions,
            "queries_per_step": queries_per_step,
            "icl_iters": icl_iters,
            "seed": seed,
            "validation_size": validation_size,
            "red_team_validation_size": red_team_validation,
            "acceptance_gate": True if gate else None,
            "length_normalization": True if length_normalization else None,
            "jury_size": jury_size,
            "max_prompt_tokens": max_prompt_tokens,
            "max_icl_tokens": max_icl_tokens,
            "max_concurrency": max_concurrency,
            "structured_output_method": structured_output,
            "role_structured_output": {
                role: method
                for role, method in (
                    ("judge", judge_structured_output),
                    ("rewriter", rewriter_structured_output),
                )
                if method is not None
            }
            or None,
            "cache": cache,
            "critique_memory": False if no_memory else None,
            "review": True if review else None,
        },
    )
    try:
        training = load_queries(queries) if queries else load_training_queries()
        examples = load_icl_examples(icl) if icl else None
    except DRPOError as exc:
        raise fail(str(exc)) from exc
    specs = model_specs(sandbox, responder, judge, rewriter, jury)
    if estimate:
        return show_estimate(cfg, training, examples, specs, as_json)
    models = build_models(specs, base_url)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    directory = run_dir or Path("runs") / run_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CLI_FILE).write_text(json.dumps({**specs, "base_url": base_url}, indent=2), encoding="utf-8")
    resources = RunResources(
        run_dir=directory,
        run_id=run_id,
        # Runs that share a parent folder share critique memory, so later runs learn from earlier ones.
        memory=memory or str(directory.resolve().parent / SHARED_MEMORY_DIR),
        checkpointer=checkpointer,
        icl_examples=examples,
        callbacks=[JsonlTracer(directory / TRACE_FILE)],
        reviewer=ask_reviewer if review else None,
    )
    started = time.perf_counter()
    with resumable(directory, checkpointer):
        with progress_bar(cfg.depth, not (quiet or as_json)) as on_progress:
            artifact = run_sync(
                arun_optimization(training, models, replace(resources, on_progress=on_progress), cfg)
            )
        write_html_report(directory)
        show_run(artifact, directory, time.perf_counter() - started, quiet, as_json)
        if artifact.no_valid_candidate():
            raise NoValidCandidate(artifact, directory)
        if not (quiet or as_json):
            responder_model = with_output_limit(models.responder, cfg.role_max_tokens["responder"])
            show_before_after(responder_model, cfg.initial_prompt, artifact)


@app.command("resume")
def resume_command(
    run_dir: Annotated[Path, typer.Argument(help="The run directory of a stopped or crashed run.")],
    checkpointer: Annotated[
        str | None, typer.Option(help="postgresql:// URL, if the run used PostgreSQL checkpoints.")
    ] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Continue a run from its last checkpoint; calls that finished before the stop are not repeated."""
    if not run_dir.is_dir():
        raise fail(f"no run directory {run_dir}")
    built = _read_cli_file(run_dir)
    specs: ModelSpecs = {
        "responder": built["responder"],
        "judge": built["judge"],
        "rewriter": built.get("rewriter"),
        "jury": built.get("jury") or [],
    }
    models = build_models(specs, built.get("base_url"))
    started = time.perf_counter()
    total = load_config(None, {}).depth
    with resumable(run_dir, checkpointer):
        with progress_bar(total, not (quiet or as_json)) as on_progress:
            artifact = run_sync(
                aresume(
                    run_dir,
                    responder=models.responder,
                    judge=models.judge,
                    rewriter=models.rewriter,
                    jury=models.jury,
                    checkpointer=checkpointer,
                    callbacks=[JsonlTracer(run_dir / TRACE_FILE)],  # appends to the run's trace
                    on_progress=on_progress,
                    reviewer=ask_reviewer,
                )
            )
        write_html_report(run_dir)  # a crash may have come before `drpo optimize` wrote it
        show_run(artifact, run_dir, time.perf_counter() - started, quiet, as_json)
        if artifact.no_valid_candidate():
            raise NoValidCandidate(artifact, run_dir)


def _read_cli_file(run_dir: Path) -> dict[str, Any]:
    """How ``drpo optimize`` built the run's models, checked before anything is built from it."""
    try:
        built = json.loads((run_dir / CLI_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise fail(
            f"{run_dir} was not started by `drpo optimize` (no {CLI_FILE}); use drpo_agents.resume()"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"cannot read {run_dir / CLI_FILE}: {exc}") from exc
    roles_ok = isinstance(built, dict) and all(
        isinstance(built.get(role), str) and built[role] for role in ("responder", "judge")
    )
    if not roles_ok or not isinstance(built.get("jury", []), list):
        raise fail(f"{run_dir / CLI_FILE} was not written by `drpo optimize`: not a drpo run directory")
    return dict(built)


def write_html_report(run_dir: Path) -> None:
    """Write the run's HTML report; a failure is a warning (the run itself succeeded)."""
    from drpo_agents.report import write_run_report

    try:
        write_run_report(run_dir)
    except (DRPOError, OSError) as exc:
        console.print(f"[yellow]warning:[/] could not write the HTML report: {exc}")


def ask_reviewer(request: dict[str, Any]) -> dict[str, str]:
    """Show the final prompt and read a decision from the terminal (or piped stdin)."""
    console.print(Panel(request["prompt"], title=f"Review the optimized prompt ({request['candidate_id']})"))
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
