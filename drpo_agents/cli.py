"""The ``drpo`` command line. Thin: it parses options, calls the public API and renders progress.

Exit codes: 0 success; 1 the run failed; 2 invalid usage, configuration or input.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from drpo_agents.api import ARTIFACT_FILE, optimize
from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import load_icl_examples, load_queries, load_training_queries
from drpo_agents.errors import DRPOError
from drpo_agents.models.registry import resolve_model

app = typer.Typer(
    name="drpo",
    help="Tuning-free self-alignment of language models with DRPO (Dynamic Rewarding with Prompt Optimization).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _load_config(path: Path | None, overrides: dict[str, Any]) -> DRPOConfig:
    base: dict[str, Any] = {}
    if path is not None:
        try:
            base = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _fail(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(base, dict):
            raise _fail(f"config file {path} must hold a JSON object")
    try:
        return DRPOConfig.model_validate({**base, **{k: v for k, v in overrides.items() if v is not None}})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid configuration: {problems}") from exc


def _model(spec: str | None, role: str, sandbox: bool, base_url: str | None) -> Any:
    if sandbox and spec is None:
        spec = "sandbox"
    if spec is None:
        raise _fail(f"no {role} model: pass --{role} PROVIDER:MODEL (e.g. openai:gpt-4o-mini) or --sandbox")
    if base_url and not spec.startswith("sandbox"):
        # OpenAI-compatible servers (vLLM, Ollama, llama.cpp): the key comes only from the environment.
        import os

        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=spec.removeprefix("openai:"),
            base_url=base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
            timeout=120,
            max_retries=3,
        )
    try:
        return resolve_model(spec, role)  # type: ignore[arg-type]
    except DRPOError as exc:
        raise _fail(str(exc)) from exc


def _print_summary(artifact: AlignmentArtifact, run_dir: Path, elapsed: float) -> None:
    table = Table(title="Reward per level (best candidate)", show_edge=False)
    table.add_column("level", justify="right")
    table.add_column("reward on level's queries", justify="right")
    table.add_column("mean reward history", justify="right")
    table.add_column("note")
    for level in artifact.levels:
        level_reward = f"{level.level_rewards[0]:.2f}" if level.level_rewards else "-"
        mean = f"{level.beam_mean_rewards[0]:.2f}" if level.beam_mean_rewards else "-"
        note = (
            "skipped (already high)"
            if level.skipped
            else ("; ".join(level.failures)[:60] if level.failures else "")
        )
        table.add_row(str(level.level), level_reward, mean, note)
    out = Console()
    out.print(table)
    out.print(
        Panel(
            artifact.system_prompt, title=f"Best system prompt ({artifact.best_candidate_id})", expand=False
        )
    )
    usage = ", ".join(
        f"{role} {u.calls} calls/{u.total_tokens:,} tok" for role, u in sorted(artifact.usage.items())
    )
    out.print(f"Usage: {usage}")
    for note in artifact.notes:
        out.print(f"[yellow]note:[/] {note}")
    out.print(f"Artifact: {run_dir / ARTIFACT_FILE}   ({elapsed:.1f} s)")


@app.command("optimize")
def optimize_command(
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Use the offline simulated models for every role not given.")
    ] = False,
    responder: Annotated[
        str | None, typer.Option(help="Model to align, PROVIDER:MODEL (e.g. openai:gpt-4o-mini).")
    ] = None,
    judge: Annotated[str | None, typer.Option(help="Judge model, PROVIDER:MODEL.")] = None,
    rewriter: Annotated[str | None, typer.Option(help="Rewriter model (default: the judge's).")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint for every non-sandbox role.")
    ] = None,
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
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice.")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Most model calls in flight.")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where the run writes its files (default: runs/RUN_ID).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress or summary; print only the artifact path.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Optimize a system prompt with DRPO and write the artifact into a run directory."""
    cfg = _load_config(
        config,
        {
            "depth": depth,
            "beam_size": beam_size,
            "n_actions": n_actions,
            "queries_per_step": queries_per_step,
            "seed": seed,
            "max_concurrency": max_concurrency,
        },
    )
    try:
        training = load_queries(queries) if queries else load_training_queries()
        examples = load_icl_examples(icl) if icl else None
    except DRPOError as exc:
        raise _fail(str(exc)) from exc
    models = {
        role: _model(spec, role, sandbox, base_url)
        for role, spec in (("responder", responder), ("judge", judge))
    }
    models["rewriter"] = _model(rewriter, "rewriter", sandbox, base_url) if (rewriter or sandbox) else None
    run_id = time.strftime("%Y%m%d-%H%M%S")
    directory = run_dir or Path("runs") / run_id

    progress = Progress(
        TextColumn("[bold]DRPO[/] level {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet or as_json,
    )
    task = progress.add_task("search", total=cfg.depth, status="evaluating the initial prompt")
    calls = 0

    def on_progress(node: str, update: dict[str, Any]) -> None:
        nonlocal calls
        calls += sum(u.get("calls", 0) for u in update.get("usage", {}).values())
        for level in update.get("levels", []):
            best = level["beam_mean_rewards"][0] if level["beam_mean_rewards"] else float("nan")
            progress.update(
                task,
                completed=level["level"],
                total=level["depth_limit"],
                status=f"best mean reward {best:.2f} | {calls} model calls",
            )

    started = time.perf_counter()
    try:
        with progress:
            artifact = optimize(
                training,
                responder=models["responder"],
                judge=models["judge"],
                rewriter=models["rewriter"],
                config=cfg,
                icl_examples=examples,
                run_dir=directory,
                run_id=run_id,
                on_progress=on_progress,
            )
    except DRPOError as exc:
        raise _fail(str(exc), EXIT_FAILED) from exc
    elapsed = time.perf_counter() - started
    if as_json:
        summary = {
            "run_dir": str(directory),
            "artifact": str(directory / ARTIFACT_FILE),
            "best_prompt": artifact.system_prompt,
            "reward_curve": artifact.reward_curve(),
            "usage": {role: u.model_dump() for role, u in artifact.usage.items()},
            "seconds": round(elapsed, 2),
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    elif quiet:
        sys.stdout.write(f"{directory / ARTIFACT_FILE}\n")
    else:
        _print_summary(artifact, directory, elapsed)


@app.command("version")
def version_command() -> None:
    """Print the installed version."""
    from drpo_agents import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``drpo`` script."""
    app()
