"""What the CLI shows of a run: the progress bar, the run summary and ``drpo inspect``'s tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from drpo_agents.artifact import AlignmentArtifact, LevelRecord
from drpo_agents.cli.typer_app import console
from drpo_agents.infra.run_files import ARTIFACT_FILE
from drpo_agents.run_spec import ProgressCallback, ProgressEvent

if TYPE_CHECKING:  # langchain is imported when a run has finished, not at start-up
    from langchain_core.messages import BaseMessage


def print_table(title: str, columns: Sequence[str | Column], rows: Iterable[Sequence[str]]) -> None:
    """One table on stdout: every table the CLI draws goes through here."""
    table = Table(*columns, title=title, show_edge=False)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[ProgressCallback]:
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

    def on_progress(event: ProgressEvent) -> None:
        nonlocal calls
        calls += event["calls"]
        if event["node"] == "icl_stage":
            progress.update(task, status="optimized the ICL examples")
        if event["level"] is not None:
            best = event["best_mean_reward"]
            progress.update(
                task,
                completed=event["level"],
                total=event["depth"],
                status=f"best mean reward {best if best is not None else float('nan'):.2f} | {calls} model calls",
            )

    with progress:
        yield on_progress


JSON_DECIMALS = 4  # floats in JSON output: means of 1-5 scores and costs, without float noise


def print_json(value: object) -> None:
    """``value`` as indented JSON on stdout, every float rounded to :data:`JSON_DECIMALS` places."""

    def rounded(item: object) -> object:
        if isinstance(item, float):
            return round(item, JSON_DECIMALS)
        if isinstance(item, dict):
            return {key: rounded(v) for key, v in item.items()}
        if isinstance(item, list | tuple):
            return [rounded(v) for v in item]
        return item

    sys.stdout.write(json.dumps(rounded(value), indent=2) + "\n")


def show_run(
    artifact: AlignmentArtifact, run_dir: Path, elapsed: float | None, quiet: bool, as_json: bool
) -> None:
    """The summary of a run: JSON, the artifact path alone, or the tables and best prompt
    (``elapsed``: the run's own seconds, None when it is inspected later)."""
    if as_json:
        summary: dict[str, object] = {
            "run_dir": str(run_dir),
            "artifact": str(run_dir / ARTIFACT_FILE),
            "best_prompt": artifact.system_prompt,
            "reward_curve": artifact.reward_curve(),
            "usage": {role: u.model_dump() for role, u in artifact.usage.items()},
            "failed_levels": artifact.failed_levels(),
            "no_valid_candidate": artifact.no_valid_candidate(),
            "parent": artifact.parent.model_dump() if artifact.parent is not None else None,
            "lessons_by_run": artifact.lesson_sources(),
        }
        if elapsed is not None:
            summary["seconds"] = round(elapsed, 2)
        print_json(summary)
        return
    if quiet:
        sys.stdout.write(f"{run_dir / ARTIFACT_FILE}\n")
        return
    _reward_table(artifact)
    out = Console()
    title = f"Best system prompt ({artifact.best_candidate_id})"
    if artifact.no_valid_candidate():
        title = "No valid candidate: this is the initial prompt"
    out.print(Panel(artifact.system_prompt, title=title, expand=False))
    usage = ", ".join(
        f"{role} {u.calls} calls/{u.total_tokens:,} tok" for role, u in sorted(artifact.usage.items())
    )
    out.print(f"Usage: {usage}")
    if artifact.parent is not None:
        parent = artifact.parent
        aligned_for = f", aligned for {parent.responder}" if parent.responder else ""
        out.print(
            f"Started from: run {parent.run_id} ({parent.source}, sha256 {parent.artifact_sha256[:12]}{aligned_for})"
        )
    if artifact.icl_examples and artifact.icl_retrieval is not None:
        retrieval = artifact.icl_retrieval
        out.print(
            f"ICL examples: {len(artifact.icl_examples)}, up to {artifact.icl_k} per request, those with "
            f"similarity >= {retrieval.min_similarity:.2f} ({retrieval.embeddings})"
        )
    if sources := artifact.lesson_sources():
        out.print(_memory_line(artifact.run_id, sources))
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
    out.print(
        f"Artifact: {run_dir / ARTIFACT_FILE}" + (f"   ({elapsed:.1f} s)" if elapsed is not None else "")
    )


def _reward_table(artifact: AlignmentArtifact) -> None:
    failed = artifact.failed_levels()

    def row(level: LevelRecord) -> list[str]:
        level_reward = f"{level.level_rewards[0]:.2f}" if level.level_rewards else "-"
        mean = f"{level.beam_mean_rewards[0]:.2f}" if level.beam_mean_rewards else "-"
        if level.level in failed:
            note = f"[bold red]FAILED[/] ({len(level.failures)} failures) first: {escape(failed[level.level][:80])}"
        elif level.skipped:
            note = "all carried (high on their previous queries)"
        else:
            note = escape("; ".join(str(f) for f in level.failures)[:60])
        return [str(level.level), level_reward, mean, note]

    columns = ("level", "reward on level's queries", "mean reward history")
    print_table(
        "Reward per level (best candidate)",
        [*(Column(name, justify="right") for name in columns), "note"],
        (row(level) for level in artifact.levels),
    )


def _memory_line(run_id: str, sources: dict[str, int]) -> str:
    """``Memory: 12 lessons recalled: 7 from this run, 5 from earlier runs (r0001: 5)``."""
    own = sources.get(run_id, 0)
    earlier = {run: n for run, n in sorted(sources.items()) if run != run_id}
    line = f"Memory: {sum(sources.values())} lessons recalled: {own} from this run"
    if earlier:
        named = ", ".join(f"{run}: {n}" for run, n in earlier.items())
        line += f", {sum(earlier.values())} from earlier runs ({named})"
    return line


# The held-out query of the before/after demo: an open question whose answer gains from what DRPO's
# prompts typically add (structure, depth, a balanced view), so the difference is visible.
DEMO_QUERY_ID = "e014"
# After a run on conversations, the demo is a held-out conversation whose second turn leans on
# what the user said in the first.
DEMO_CONVERSATION_ID = "m001"


def show_before_after(responder: Any, initial_prompt: str, artifact: AlignmentArtifact) -> None:
    """Show how the aligned model answers held-out input, before and after (what users came for):
    a query, or after a run on conversations the second turn of a conversation, each model
    answering the first turn itself."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import SystemMessage

    from drpo_agents.aligned import with_alignment

    if not isinstance(responder, BaseChatModel):
        return
    turns = _demo_turns(conversation=bool(artifact.histories))
    try:
        before = _answer_turns(lambda m: responder.invoke([SystemMessage(initial_prompt), *m]), turns)
        after = _answer_turns(with_alignment(responder, artifact).invoke, turns)
    except Exception as exc:  # a demo answer must not turn a finished run into a failure
        console.print(f"[yellow]warning:[/] could not produce the before/after answers: {exc}")
        return
    out = Console()
    if len(turns) == 1:
        out.print(f"\n[bold]Held-out query:[/] {escape(turns[0])}")
    else:
        out.print("\n[bold]Held-out conversation[/] (each model answered the earlier turns itself):")
        for turn in turns:
            out.print(f"  [bold]user:[/] {escape(turn)}")
    for title, answer in (("before (initial prompt)", before), ("after (optimized prompt + ICL)", after)):
        out.print(
            Panel(
                escape(answer.text.strip() or "(empty)"),
                title=title,
                subtitle=_answer_note(answer.response_metadata),
                expand=False,
            )
        )


def _demo_turns(*, conversation: bool) -> list[str]:
    """The user turns of the demo: one held-out query, or two turns of a held-out conversation."""
    from drpo_agents.datasets import load_eval_conversations, load_eval_queries

    if conversation:
        chats = load_eval_conversations()
        return next((c for c in chats if c["id"] == DEMO_CONVERSATION_ID), chats[0])["turns"][:2]
    held_out = load_eval_queries()
    return [next((q for q in held_out if q["id"] == DEMO_QUERY_ID), held_out[0])["query"]]


def _answer_turns(model: Callable[[list[BaseMessage]], BaseMessage], turns: Sequence[str]) -> BaseMessage:
    """The model's reply to the last of ``turns``, having answered each earlier turn itself."""
    from langchain_core.messages import HumanMessage

    messages: list[BaseMessage] = []
    for turn in turns:
        messages.append(HumanMessage(turn))
        messages.append(model(messages))
    return messages[-1]


def _answer_note(metadata: dict[str, Any]) -> str | None:
    """Say so when the answer shown is not all the model would have said (honest demo)."""
    if metadata.get("repetition_cut"):
        return "the model began repeating itself here: the loop is shown once"
    if metadata.get("finish_reason") == "length":
        return "cut at the token limit"
    return None
