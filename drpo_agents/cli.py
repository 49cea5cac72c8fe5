"""The ``drpo`` command line. Thin: it parses options, calls the public API and renders progress.

Exit codes:

* 0: success.
* 1: the run failed: a service it needs cannot be reached (model endpoint, Chroma server,
  PostgreSQL), the file system refused a write (read-only directory, disk full), or a model
  error stopped it. Work done so far stays in the run directory; the message says how to resume.
* 2: invalid usage, configuration or input (a missing API key, an unknown provider, a bad flag
  or file, a damaged or foreign run directory given to ``resume``).
* 3: the run finished but produced no valid candidate: every rewrite or every evaluation of
  every level that tried failed, so the "best" prompt is only the initial one. The artifact is
  still written (``drpo inspect`` shows the failures per role).
* 130: interrupted (Ctrl-C); the message gives the ``drpo resume`` command that continues it.

Every failure is one ``error:`` line on stderr, never a traceback (set ``DRPO_DEBUG=1`` to get
the traceback of an unexpected error), and never shows a secret.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from drpo_agents.api import ARTIFACT_FILE, aoptimize, aresume
from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.calls import run_sync
from drpo_agents.config import CachePolicy, DRPOConfig, StructuredOutputMethod
from drpo_agents.datasets import load_eval_queries, load_icl_examples, load_queries, load_training_queries
from drpo_agents.errors import ArtifactError, ConfigError, DRPOError
from drpo_agents.models.registry import resolve_model, with_output_limit
from drpo_agents.tracing import TRACE_FILE, JsonlTracer, scrub_secrets

app = typer.Typer(
    name="drpo",
    help="Tuning-free self-alignment of language models with DRPO (Dynamic Rewarding with Prompt Optimization).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_CANDIDATE = 3
EXIT_INTERRUPTED = 130
CLI_FILE = "cli.json"  # how the CLI built the models, so `drpo resume` can rebuild them (no secrets)

Sandbox = Annotated[
    bool, typer.Option("--sandbox", help="Use the offline simulated models for every role not given.")
]
Responder = Annotated[
    str | None, typer.Option(help="Model to align, PROVIDER:MODEL (e.g. openai:gpt-4o-mini).")
]
Judge = Annotated[str | None, typer.Option(help="Judge model, PROVIDER:MODEL.")]
BaseUrl = Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint for every non-sandbox role.")]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress or summary; print only the result path.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


def _print_error(message: str) -> None:
    """The one ``error:`` line: on stderr, on one line, without secrets."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    console.print(f"[bold red]error:[/] {escape(scrub_secrets(line))}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    _print_error(message)
    return typer.Exit(code)


class _Stopped(Exception):
    """A run stopped after its directory was set up (any error, or Ctrl-C as ``__cause__``):
    the work done so far is kept there, and ``resume`` is the command that continues it."""

    def __init__(self, resume: str) -> None:
        super().__init__(resume)
        self.resume = resume


class _NoValidCandidate(Exception):
    """The run finished without a single valid new prompt (see ``AlignmentArtifact.no_valid_candidate``)."""

    def __init__(self, artifact: AlignmentArtifact, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.artifact, self.run_dir = artifact, run_dir


def _resume_command(run_dir: Path, checkpointer: str | None) -> str:
    """The command that continues a run (a checkpointer URL with a password is not repeated)."""
    import shlex

    command = f"drpo resume {shlex.quote(str(run_dir))}"
    if checkpointer is None:
        return command
    shown = scrub_secrets(checkpointer)
    return f"{command} --checkpointer " + (
        "URL (the same PostgreSQL URL)" if shown != checkpointer else shlex.quote(shown)
    )


@contextmanager
def _resumable(run_dir: Path, checkpointer: str | None) -> Iterator[None]:
    """Mark whatever stops the run from here on as resumable (``main`` says how)."""
    try:
        yield
    except (typer.Exit, typer.Abort, _NoValidCandidate):
        raise  # already reported, or finished (nothing to resume)
    except (Exception, KeyboardInterrupt) as exc:
        raise _Stopped(_resume_command(run_dir, checkpointer)) from exc


def _exit_of(exc: BaseException) -> tuple[int, str]:
    """The exit code and message for whatever ended a command: the CLI's one error mapping."""
    if isinstance(exc, _Stopped):
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return (
                EXIT_INTERRUPTED,
                f"interrupted. The run is saved up to this point; continue it with: {exc.resume}",
            )
        code, message = _exit_of(exc.__cause__ or exc)
        return (
            code,
            f"{message.rstrip('.')}. The run is saved up to this point; continue it with: {exc.resume}",
        )
    if isinstance(exc, _NoValidCandidate):
        failed = exc.artifact.failed_levels()
        first = min(failed)
        return EXIT_NO_CANDIDATE, (
            f"the run produced no valid candidate: {len(failed)} level(s) failed (level {first}: "
            f"{failed[first]}); the result is the initial prompt. The artifact is saved: "
            f"drpo inspect {exc.run_dir}"
        )
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, ConfigError | ArtifactError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, DRPOError):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return EXIT_FAILED, f"file system error: {exc.strerror or exc}{where}"
    import sqlite3

    if isinstance(exc, sqlite3.Error):  # e.g. a read-only or damaged run directory's database
        return EXIT_FAILED, f"database error: {exc}"
    return EXIT_FAILED, (
        f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; DRPO_DEBUG=1 shows the traceback)"
    )


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
    if base_url and not spec.startswith(("sandbox", "local:")):
        from langchain_openai import ChatOpenAI

        # OpenAI-compatible servers (vLLM, Ollama, llama.cpp): the key comes only from the environment.
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


def _specs(
    sandbox: bool,
    responder: str | None,
    judge: str | None,
    rewriter: str | None,
    jury: list[str] | None = None,
) -> dict[str, Any]:
    fill = "sandbox" if sandbox else None
    return {
        "responder": responder or fill,
        "judge": judge or fill,
        "rewriter": rewriter or (fill if sandbox else None),
        "jury": list(jury or []),
    }


def _models(specs: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    remote = [
        s for s in (specs["responder"], specs["judge"], specs["rewriter"], *(specs.get("jury") or [])) if s
    ]
    if base_url and any(not s.startswith(("sandbox", "local:")) for s in remote):
        from drpo_agents.preflight import check_endpoint

        check_endpoint(base_url)
    models = {role: _model(specs[role], role, False, base_url) for role in ("responder", "judge")}
    models["rewriter"] = _model(specs["rewriter"], "rewriter", False, base_url) if specs["rewriter"] else None
    models["jury"] = [_model(spec, "judge", False, base_url) for spec in specs.get("jury") or []]
    return models


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """A rich progress bar fed by the graph's step updates."""
    progress = Progress(
        TextColumn("[bold]DRPO[/] level {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),  # a log gets no progress frames
    )
    task = progress.add_task("search", total=total, status="starting")
    calls = 0

    def on_progress(node: str, update: dict[str, Any]) -> None:
        nonlocal calls
        calls += sum(u.get("calls", 0) for u in update.get("usage", {}).values())
        if node == "icl_stage":
            progress.update(task, status="optimized the ICL examples")
        for level in update.get("levels", []):
            best = level["beam_mean_rewards"][0] if level["beam_mean_rewards"] else float("nan")
            progress.update(
                task,
                completed=level["level"],
                total=level["depth_limit"],
                status=f"best mean reward {best:.2f} | {calls} model calls",
            )

    with progress:
        yield on_progress


def _report(artifact: AlignmentArtifact, run_dir: Path, elapsed: float, quiet: bool, as_json: bool) -> None:
    if as_json:
        summary = {
            "run_dir": str(run_dir),
            "artifact": str(run_dir / ARTIFACT_FILE),
            "best_prompt": artifact.system_prompt,
            "reward_curve": artifact.reward_curve(),
            "usage": {role: u.model_dump() for role, u in artifact.usage.items()},
            "failed_levels": artifact.failed_levels(),
            "no_valid_candidate": artifact.no_valid_candidate(),
            "seconds": round(elapsed, 2),
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    if quiet:
        sys.stdout.write(f"{run_dir / ARTIFACT_FILE}\n")
        return
    table = Table(title="Reward per level (best candidate)", show_edge=False)
    table.add_column("level", justify="right")
    table.add_column("reward on level's queries", justify="right")
    table.add_column("mean reward history", justify="right")
    table.add_column("note")
    failed = artifact.failed_levels()
    for level in artifact.levels:
        level_reward = f"{level.level_rewards[0]:.2f}" if level.level_rewards else "-"
        mean = f"{level.beam_mean_rewards[0]:.2f}" if level.beam_mean_rewards else "-"
        if level.level in failed:
            note = f"[bold red]FAILED[/] ({len(level.failures)} failures) first: {escape(failed[level.level][:80])}"
        elif level.skipped:
            note = "all carried (already high)"
        else:
            note = escape("; ".join(level.failures)[:60])
        table.add_row(str(level.level), level_reward, mean, note)
    out = Console()
    out.print(table)
    title = f"Best system prompt ({artifact.best_candidate_id})"
    if artifact.no_valid_candidate():
        title = "No valid candidate: this is the initial prompt"
    out.print(Panel(artifact.system_prompt, title=title, expand=False))
    usage = ", ".join(
        f"{role} {u.calls} calls/{u.total_tokens:,} tok" for role, u in sorted(artifact.usage.items())
    )
    out.print(f"Usage: {usage}")
    correlation = artifact.length_reward_correlation()
    if correlation is not None:
        hint = " (high: check the judge for a length bias)" if correlation > 0.5 else ""
        out.print(f"Answer length vs reward correlation: {correlation:+.2f}{hint}")
    if artifact.gate_decisions:
        accepted = [d for d in artifact.gate_decisions if d.accepted]
        challenged = [d for d in artifact.gate_decisions if d.challenger_id]
        out.print(
            f"Acceptance gate: {len(accepted)} of {len(challenged)} new best prompts accepted "
            f"(drpo inspect shows every decision)"
        )
    disagreement = [lvl.jury_disagreement for lvl in artifact.levels if lvl.jury_disagreement is not None]
    if disagreement:
        out.print(
            f"Jury disagreement (mean score range per aspect): {sum(disagreement) / len(disagreement):.2f}"
        )
    for note in artifact.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print(f"Artifact: {run_dir / ARTIFACT_FILE}   ({elapsed:.1f} s)")


def _ask_reviewer(request: dict[str, Any]) -> dict[str, str]:
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
    raise _fail(
        "no review decision on stdin; the run is paused: drpo resume RUN_DIR after deciding", EXIT_FAILED
    )


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
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Optimize a system prompt with DRPO and write the artifact into a run directory."""
    cfg = _load_config(
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
        raise _fail(str(exc)) from exc
    specs = _specs(sandbox, responder, judge, rewriter, jury)
    models = _models(specs, base_url)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    directory = run_dir or Path("runs") / run_id
    # Runs that share a parent folder share critique memory, so later runs learn from earlier ones.
    memory_location = memory or str(directory.resolve().parent / "memory")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CLI_FILE).write_text(json.dumps({**specs, "base_url": base_url}, indent=2), encoding="utf-8")
    started = time.perf_counter()
    with _resumable(directory, checkpointer):
        with _progress(cfg.depth, not (quiet or as_json)) as on_progress:
            artifact = run_sync(
                aoptimize(
                    training,
                    config=cfg,
                    icl_examples=examples,
                    run_dir=directory,
                    run_id=run_id,
                    memory=memory_location,
                    checkpointer=checkpointer,
                    on_progress=on_progress,
                    reviewer=_ask_reviewer if review else None,
                    callbacks=[JsonlTracer(directory / TRACE_FILE)],
                    **models,
                )
            )
        _write_html_report(directory)
        _report(artifact, directory, time.perf_counter() - started, quiet, as_json)
        if artifact.no_valid_candidate():
            raise _NoValidCandidate(artifact, directory)
        if not (quiet or as_json):
            responder_model = with_output_limit(models["responder"], cfg.role_max_tokens["responder"])
            _before_after(responder_model, cfg.initial_prompt, artifact)


# The held-out query of the before/after demo: an open question whose answer gains from what DRPO's
# prompts typically add (structure, depth, a balanced view), so the difference is visible.
DEMO_QUERY_ID = "e014"


def _before_after(responder: Any, initial_prompt: str, artifact: AlignmentArtifact) -> None:
    """Show how the aligned model answers a held-out query, before and after (what users came for)."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import HumanMessage, SystemMessage

    from drpo_agents.runnable import with_alignment

    if not isinstance(responder, BaseChatModel):
        return
    held_out = load_eval_queries()
    query = next((q for q in held_out if q["id"] == DEMO_QUERY_ID), held_out[0])["query"]
    try:
        before = responder.invoke([SystemMessage(initial_prompt), HumanMessage(query)])
        after = with_alignment(responder, artifact).invoke(query)
    except Exception as exc:  # a demo answer must not turn a finished run into a failure
        console.print(f"[yellow]warning:[/] could not produce the before/after answers: {exc}")
        return
    out = Console()
    out.print(f"\n[bold]Held-out query:[/] {escape(query)}")
    for title, answer in (("before (initial prompt)", before), ("after (optimized prompt + ICL)", after)):
        out.print(
            Panel(
                escape(answer.text.strip() or "(empty)"),
                title=title,
                subtitle=_answer_note(answer.response_metadata),
                expand=False,
            )
        )


def _answer_note(metadata: dict[str, Any]) -> str | None:
    """Say so when the answer shown is not all the model would have said (honest demo)."""
    if metadata.get("repetition_cut"):
        return "the model began repeating itself here: the loop is shown once"
    if metadata.get("finish_reason") == "length":
        return "cut at the token limit"
    return None


def _write_html_report(run_dir: Path) -> None:
    from drpo_agents.report import write_run_report

    try:
        write_run_report(run_dir)
    except (DRPOError, OSError) as exc:  # the run itself succeeded; a report problem is not fatal
        console.print(f"[yellow]warning:[/] could not write the HTML report: {exc}")


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
        raise _fail(f"no run directory {run_dir}")
    try:
        built = json.loads((run_dir / CLI_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise _fail(
            f"{run_dir} was not started by `drpo optimize` (no {CLI_FILE}); use drpo_agents.resume()"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"cannot read {run_dir / CLI_FILE}: {exc}") from exc
    roles_ok = isinstance(built, dict) and all(
        isinstance(built.get(role), str) and built[role] for role in ("responder", "judge")
    )
    if not roles_ok or not isinstance(built.get("jury", []), list):
        raise _fail(f"{run_dir / CLI_FILE} was not written by `drpo optimize`: not a drpo run directory")
    models = _models({"rewriter": None, **built}, built.get("base_url"))
    started = time.perf_counter()
    total = _load_config(None, {}).depth
    with _resumable(run_dir, checkpointer):
        with _progress(total, not (quiet or as_json)) as on_progress:
            artifact = run_sync(
                aresume(
                    run_dir,
                    checkpointer=checkpointer,
                    on_progress=on_progress,
                    reviewer=_ask_reviewer,
                    **models,
                )
            )
        _report(artifact, run_dir, time.perf_counter() - started, quiet, as_json)
        if artifact.no_valid_candidate():
            raise _NoValidCandidate(artifact, run_dir)


@app.command("evaluate")
def evaluate_command(
    artifact: Annotated[Path | None, typer.Option(help="Artifact to evaluate (from drpo optimize).")] = None,
    official: Annotated[
        Path | None, typer.Option(help="An official DRPO search trace (JSON) to evaluate instead.")
    ] = None,
    sandbox: Sandbox = False,
    responder: Responder = None,
    judge: Judge = None,
    base_url: BaseUrl = None,
    queries: Annotated[
        Path | None, typer.Option(help="Held-out queries; default: the packaged evaluation set.")
    ] = None,
    prompt: Annotated[
        list[str] | None, typer.Option(help="Extra setup NAME=FILE (a system prompt file); repeatable.")
    ] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Leave out the plain base prompt.")] = False,
    no_urial: Annotated[bool, typer.Option("--no-urial", help="Leave out the URIAL-style baseline.")] = False,
    allow_overlap: Annotated[
        bool, typer.Option("--allow-overlap", help="Allow evaluation queries seen in training.")
    ] = False,
    max_concurrency: Annotated[int, typer.Option(help="Most model calls in flight.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for evaluation.json and evaluation.md.")] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Compare the optimized prompt with baselines on held-out queries (aspect scores and win rates)."""
    from drpo_agents.evaluation import aevaluate
    from drpo_agents.official import load_official_trace

    if (artifact is None) == (official is None):
        raise _fail("pass exactly one of --artifact or --official")
    try:
        loaded = AlignmentArtifact.load(artifact) if artifact else load_official_trace(official)  # type: ignore[arg-type]
        held_out = load_queries(queries) if queries else load_eval_queries()
        extra: dict[str, str] = {}
        for item in prompt or []:
            name, _, path = item.partition("=")
            if not name or not path:
                raise _fail(f"--prompt takes NAME=FILE, got {item!r}")
            extra[name] = Path(path).read_text(encoding="utf-8")
    except (DRPOError, OSError, UnicodeDecodeError) as exc:
        raise _fail(str(exc)) from exc
    specs = _specs(sandbox, responder, judge, None)
    models = _models(specs, base_url)
    try:
        report = run_sync(
            aevaluate(
                held_out,
                responder=models["responder"],
                judge=models["judge"],
                artifact=loaded,
                prompts=extra,
                include_base=not no_base,
                include_urial=not no_urial,
                allow_overlap=allow_overlap,
                max_concurrency=max_concurrency,
                seed=seed,
            )
        )
    except DRPOError as exc:
        raise _fail(str(exc), EXIT_USAGE if "overlap" in str(exc) else EXIT_FAILED) from exc
    folder = out or (artifact.parent if artifact else Path("."))
    folder.mkdir(parents=True, exist_ok=True)
    report.save(folder / "evaluation.json")
    (folder / "evaluation.md").write_text(report.to_markdown(), encoding="utf-8")
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    elif quiet:
        sys.stdout.write(f"{folder / 'evaluation.json'}\n")
    else:
        Console().print(report.to_markdown(), markup=False, highlight=False)


@app.command("import-official")
def import_official_command(
    trace: Annotated[Path, typer.Argument(help="Official DRPO search trace: {'level i': {'Prompt', ...}}.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the artifact.")] = Path(
        "artifact.json"
    ),
    icl: Annotated[Path | None, typer.Option(help="ICL examples to pair with the prompt (.json).")] = None,
) -> None:
    """Turn a published DRPO prompt trace into an artifact usable with with_alignment and evaluate."""
    from drpo_agents.official import load_official_trace

    try:
        examples = load_icl_examples(icl) if icl else None
        artifact = load_official_trace(trace, icl_examples=examples)
    except DRPOError as exc:
        raise _fail(str(exc)) from exc
    artifact.save(output)
    sys.stdout.write(f"{output}\n")


def _load_artifact(path: Path) -> AlignmentArtifact:
    """An artifact from a file or a run directory (its artifact.json)."""
    try:
        return AlignmentArtifact.load(path / ARTIFACT_FILE if path.is_dir() else path)
    except DRPOError as exc:
        raise _fail(str(exc)) from exc


def _failure_table(artifact: AlignmentArtifact) -> None:
    """Failed calls per role, with the first error of each (or one line when nothing failed)."""
    counts = artifact.failure_counts()
    if not any(f.failed or f.rejected for f in counts.values()):
        Console().print("Failed model calls: none")
        return
    table = Table(title="Failed model calls per role", show_edge=False)
    for column in ("role", "failed calls", "answered calls", "rejected proposals", "first error"):
        table.add_column(column)
    for role, f in counts.items():
        usage = artifact.usage.get(role)
        table.add_row(
            role,
            str(f.failed),
            str(usage.calls) if usage else "-",
            str(f.rejected) if role == "rewriter" else "-",
            escape((f.first_error or "-")[:100]),
        )
    Console().print(table)


@app.command("inspect")
def inspect_command(
    run: Annotated[Path, typer.Argument(help="A run directory or an artifact.json.")],
    as_json: AsJson = False,
) -> None:
    """Summarize a run in the terminal: reward per level, best prompt, usage, validation, failures."""
    artifact = _load_artifact(run)
    if as_json:
        summary = {
            "run_id": artifact.run_id,
            "best_candidate_id": artifact.best_candidate_id,
            "best_prompt": artifact.system_prompt,
            "reward_curve": artifact.reward_curve(),
            "levels": len(artifact.levels),
            "candidates": len(artifact.candidates),
            "failed_evaluations": sum(1 for e in artifact.evaluations if e.error),
            "failures": {role: f.model_dump() for role, f in artifact.failure_counts().items()},
            "failed_levels": artifact.failed_levels(),
            "no_valid_candidate": artifact.no_valid_candidate(),
            "usage": {role: u.model_dump() for role, u in artifact.usage.items()},
            "cost": artifact.cost,
            "length_reward_correlation": artifact.length_reward_correlation(),
            "within_query_length_correlation": artifact.within_query_length_correlation(),
            "validation": [v.model_dump() for v in artifact.validation],
            "gate_decisions": [d.model_dump() for d in artifact.gate_decisions],
            "jury_disagreement": [lvl.jury_disagreement for lvl in artifact.levels],
            "notes": artifact.notes,
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    _report(artifact, run if run.is_dir() else run.parent, 0.0, False, False)
    _failure_table(artifact)
    if artifact.validation:
        table = Table(title="Validation (held-out training queries)", show_edge=False)
        for column in ("candidate", "mean", "std", "failed", "search rank"):
            table.add_column(column)
        for row in artifact.validation:
            table.add_row(
                row.candidate_id + (" (chosen)" if row.candidate_id == artifact.best_candidate_id else ""),
                f"{row.mean:.2f}" if row.mean is not None else "-",
                f"{row.std:.2f}" if row.std is not None else "-",
                str(row.failed),
                str(row.search_rank)
                if row.search_rank is not None
                else ("initial prompt" if row.candidate_id == "c0" else "-"),
            )
        Console().print(table)
    if artifact.gate_decisions:
        table = Table(
            title="Acceptance gate (validation gain, bootstrap interval, red-team safety)", show_edge=False
        )
        for column in ("level", "challenger", "incumbent", "gain", "interval", "safety", "decision"):
            table.add_column(column)
        for d in artifact.gate_decisions:
            table.add_row(
                str(d.level),
                d.challenger_id or "-",
                d.incumbent_id,
                f"{d.mean_difference:+.3f}" if d.mean_difference is not None else "-",
                f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
                if d.ci_low is not None and d.ci_high is not None
                else "-",
                f"{d.incumbent_safety:.2f} -> {d.challenger_safety:.2f}"
                if d.incumbent_safety is not None and d.challenger_safety is not None
                else "-",
                "accepted" if d.accepted else escape(d.reason.split(":")[0]),
            )
        Console().print(table)


@app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="A run directory (or an artifact.json).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the HTML.")] = None,
) -> None:
    """Write a self-contained HTML report (plots, search tree, prompt diffs, evaluation) and print its path."""
    from drpo_agents.report import write_report

    source = run / ARTIFACT_FILE if run.is_dir() else run
    target = output or (run if run.is_dir() else run.parent) / "report.html"
    try:
        path = write_report(source, target)
    except DRPOError as exc:
        raise _fail(str(exc)) from exc
    sys.stdout.write(f"{path}\n")


@app.command("chat")
def chat_command(
    artifact: Annotated[
        Path, typer.Option(help="Artifact (or run directory) whose prompt and ICL examples to apply.")
    ],
    sandbox: Sandbox = False,
    model: Annotated[
        str | None, typer.Option(help="Chat model, PROVIDER:MODEL (default: the artifact's responder).")
    ] = None,
    base_url: BaseUrl = None,
) -> None:
    """Chat with a model aligned by an artifact (reads lines from stdin; an empty line or EOF ends)."""
    from drpo_agents.runnable import with_alignment

    loaded = _load_artifact(artifact)
    spec = model or ("sandbox" if sandbox else None)
    if spec is None:
        raise _fail("pass --model PROVIDER:MODEL (or --sandbox) for the model to chat with")
    aligned = with_alignment(_model(spec, "responder", False, base_url), loaded)
    interactive = sys.stdin.isatty()
    history: list[Any] = []
    from langchain_core.messages import HumanMessage

    while True:
        if interactive:
            console.print("[bold]you>[/] ", end="")
        line = sys.stdin.readline()
        if not line.strip():
            break
        history.append(HumanMessage(line.strip()))
        try:
            reply = aligned.invoke(history)
        except Exception as exc:  # a chat must survive one failed call
            console.print(f"[red]model error:[/] {type(exc).__name__}: {exc}")
            history.pop()
            continue
        history.append(reply)
        sys.stdout.write(f"{reply.text}\n")
        sys.stdout.flush()


@app.command("install-local")
def install_local_command(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if a working runtime is installed.")
    ] = False,
) -> None:
    """Build the llama.cpp runtime of local: models (portable: any CPU of this architecture) and check it."""
    from drpo_agents.models.runtime_install import install_local_runtime

    try:
        install_local_runtime(force)
    except DRPOError as exc:
        raise _fail(str(exc)) from exc


@app.command("version")
def version_command() -> None:
    """Print the installed version."""
    from drpo_agents import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the ``drpo`` script: runs a command and maps whatever stopped it to one
    ``error:`` line and an exit code (see the module docstring)."""
    try:
        app()  # exits by itself on success, on typer.Exit and on click's usage errors
    except Exception as exc:
        if os.environ.get("DRPO_DEBUG"):
            raise
        code, message = _exit_of(exc)
        _print_error(message)
        sys.stdout.flush()
        sys.stderr.flush()
        if code == EXIT_INTERRUPTED:
            # Model calls still running in worker threads would hold the exit until they end (up to
            # a client timeout); the checkpoints already hold everything that finished.
            os._exit(code)
        sys.exit(code)
