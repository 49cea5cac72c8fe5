"""The commands around a run: ``evaluate``, ``import-official``, ``inspect``, ``report``, ``chat``
and ``install-local``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from drpo_agents.artifact import AlignmentArtifact, load_artifact
from drpo_agents.cli.build import build_model, build_models, model_specs, read_cli_record
from drpo_agents.cli.errors import EXIT_FAILED, EXIT_USAGE, fail
from drpo_agents.cli.evaluation import (
    BaselineOption,
    FailUnderOption,
    MarkdownOption,
    MaxRegressionOption,
    MinWinRateOption,
    gate_thresholds,
    show_evaluation,
)
from drpo_agents.cli.inspection import inspection_summary, show_inspection
from drpo_agents.cli.summary import print_json
from drpo_agents.cli.typer_app import AsJson, BaseUrl, Judge, Quiet, Responder, Sandbox, app, console
from drpo_agents.datasets import (
    Query,
    load_eval_conversations,
    load_eval_queries,
    load_queries,
)
from drpo_agents.errors import DRPOError
from drpo_agents.evaluation.held_out import OverlapError
from drpo_agents.icl_sets import load_icl_examples
from drpo_agents.infra.calls import run_sync
from drpo_agents.infra.run_files import (
    CLI_FILE,
    EVALUATION_JOURNAL_FILE,
    REPORT_FILE,
    artifact_path,
    private_folder,
    run_folder,
)


@app.command("evaluate")
def evaluate_command(
    artifact: Annotated[
        Path | None,
        typer.Option(help="Artifact to evaluate: artifact.json, a run folder or a deployment folder."),
    ] = None,
    official: Annotated[
        Path | None, typer.Option(help="An official DRPO search trace (JSON) to evaluate instead.")
    ] = None,
    sandbox: Sandbox = False,
    responder: Responder = None,
    judge: Judge = None,
    base_url: BaseUrl = None,
    queries: Annotated[
        Path | None, typer.Option(help="Held-out queries or conversations; default: the packaged set.")
    ] = None,
    conversations: Annotated[
        bool, typer.Option("--conversations", help="Add the packaged 30 multi-turn conversations.")
    ] = False,
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
    fail_under: FailUnderOption = None,
    min_win_rate: MinWinRateOption = None,
    baseline: BaselineOption = None,
    max_regression: MaxRegressionOption = None,
    markdown: MarkdownOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for evaluation.json, evaluation.md and the response journal "
            "(evaluation_responses.sqlite: run the command again after a crash to reuse finished calls)."
        ),
    ] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Compare the optimized prompt with baselines on held-out queries (aspect scores and win rates).

    With --fail-under, --min-win-rate or --max-regression (against --baseline) it is a gate: it
    exits 1 with one line naming each check that failed and by how much. --baseline alone only
    adds the deployed artifact to the comparison.
    """
    from drpo_agents.evaluation import aevaluate

    loaded, held_out, extra = _evaluation_inputs(artifact, official, queries, prompt, conversations)
    gate = gate_thresholds(fail_under, min_win_rate, max_regression, baseline)
    models = build_models(model_specs(sandbox, responder, judge, None), base_url)
    folder = out or (run_folder(artifact) if artifact else Path("."))
    private_folder(folder)
    try:
        report = run_sync(
            aevaluate(
                held_out,
                responder=models.responder,
                judge=models.judge,
                artifact=loaded,
                baseline=_load_artifact(baseline) if baseline else None,
                gate=gate,
                prompts=extra,
                include_base=not no_base,
                include_urial=not no_urial,
                allow_overlap=allow_overlap,
                max_concurrency=max_concurrency,
                seed=seed,
                # Beside the report: the same command run again after a crash replays finished calls.
                journal=folder / EVALUATION_JOURNAL_FILE,
            )
        )
    except OverlapError as exc:  # said in the CLI's words
        raise fail(str(OverlapError(exc.overlap, remedy="pass --allow-overlap")), EXIT_USAGE) from exc
    except DRPOError as exc:
        raise fail(str(exc), EXIT_FAILED) from exc
    show_evaluation(report, folder, markdown, quiet, as_json)


def _evaluation_inputs(
    artifact: Path | None,
    official: Path | None,
    queries: Path | None,
    prompts: list[str] | None,
    conversations: bool = False,
) -> tuple[AlignmentArtifact, list[Query], dict[str, str]]:
    """The artifact (or official trace), the held-out queries and the extra prompt setups."""
    from drpo_agents.official import load_official_trace

    if (artifact is None) == (official is None):
        raise fail("pass exactly one of --artifact or --official")
    try:
        loaded = load_artifact(artifact) if artifact else load_official_trace(official)  # type: ignore[arg-type]
        held_out = load_queries(queries, user_turns=True) if queries else load_eval_queries()
        if conversations:
            held_out += load_eval_conversations()
        extra: dict[str, str] = {}
        for item in prompts or []:
            name, _, path = item.partition("=")
            if not name or not path:
                raise fail(f"--prompt takes NAME=FILE, got {item!r}")
            extra[name] = Path(path).read_text(encoding="utf-8")
    except (DRPOError, OSError, UnicodeDecodeError) as exc:
        raise fail(str(exc)) from exc
    return loaded, held_out, extra


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
        raise fail(str(exc)) from exc
    artifact.save(output)
    sys.stdout.write(f"{output}\n")


def _load_artifact(path: Path) -> AlignmentArtifact:
    """An artifact from a file or a run directory (its artifact.json)."""
    try:
        return load_artifact(path)
    except DRPOError as exc:
        raise fail(str(exc)) from exc


@app.command("inspect")
def inspect_command(
    run: Annotated[Path, typer.Argument(help="A run directory or an artifact.json.")],
    as_json: AsJson = False,
) -> None:
    """Summarize a run in the terminal: reward per level, best prompt, usage, validation, failures."""
    artifact = _load_artifact(run)
    if not as_json:
        show_inspection(artifact, run_folder(run))
        return
    print_json(inspection_summary(artifact))


@app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="A run directory (or an artifact.json).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the HTML.")] = None,
) -> None:
    """Write a self-contained HTML report (plots, search tree, prompt diffs, evaluation) and print its path."""
    from drpo_agents.report import write_report

    try:
        path = write_report(artifact_path(run), output or run_folder(run) / REPORT_FILE)
    except DRPOError as exc:
        raise fail(str(exc)) from exc
    sys.stdout.write(f"{path}\n")


@app.command("chat")
def chat_command(
    artifact: Annotated[
        Path, typer.Option(help="Artifact (or run directory) whose prompt and ICL examples to apply.")
    ],
    sandbox: Sandbox = False,
    model: Annotated[
        str | None,
        typer.Option(help="Chat model, PROVIDER:MODEL (default: the responder of the drpo optimize run)."),
    ] = None,
    base_url: BaseUrl = None,
) -> None:
    """Chat with a model aligned by an artifact (reads lines from stdin; an empty line or EOF ends)."""
    from drpo_agents.aligned import with_alignment

    loaded = _load_artifact(artifact)
    spec = model or ("sandbox" if sandbox else None)
    if spec is None:  # the model the run aligned, as `drpo optimize` recorded it
        folder = run_folder(artifact)
        if not (folder / CLI_FILE).is_file():
            raise fail(
                f"{artifact} was not made by drpo optimize (no {CLI_FILE} beside it): pass --model "
                "PROVIDER:MODEL (or --sandbox) for the model to chat with"
            )
        built = read_cli_record(folder)
        spec, base_url = built["responder"], base_url or built["base_url"]
    aligned = with_alignment(build_model(spec, "responder", base_url), loaded)
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
        if interactive:
            console.print("[bold]model>[/] ", end="")
        sys.stdout.write(f"{reply.text}\n\n")  # a blank line ends each reply
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
        raise fail(str(exc)) from exc
