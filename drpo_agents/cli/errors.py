"""The CLI's one error mapping: whatever stops a command becomes one ``error:`` line and an exit code."""

from __future__ import annotations

import shlex
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.cli.typer_app import console
from drpo_agents.errors import ArtifactError, ConfigError, DRPOError, ResumeRefused
from drpo_agents.run_spec import ProgressCallback, ProgressEvent
from drpo_agents.tracing import scrub_secrets

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_CANDIDATE = 3
EXIT_INTERRUPTED = 130


def print_error(message: str, prefix: str = "error") -> None:
    """The one ``error:`` (or ``warning:``) line, on stderr, without secrets: a message's lines
    are joined, except the indented ones, which list a set's bad items one per line
    (:func:`drpo_agents.errors.raise_item_faults`) and stay under it."""
    lines = [part.rstrip() for part in message.splitlines() if part.strip()]
    line = " ".join(part.strip() for part in lines if not part.startswith("  "))
    items = "".join(f"\n  {part.strip()}" for part in lines if part.startswith("  "))
    style = "bold red" if prefix == "error" else "bold yellow"
    console.print(
        f"[{style}]{prefix}:[/] {escape(scrub_secrets(line + items))}", highlight=False, soft_wrap=True
    )


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Report ``message`` and return the exit to raise."""
    print_error(message)
    return typer.Exit(code)


class Stopped(Exception):
    """A run stopped after its directory was set up (any error, or Ctrl-C as ``__cause__``):
    the work done so far is kept there, and ``resume`` is the command that continues it."""

    def __init__(self, resume: str) -> None:
        super().__init__(resume)
        self.resume = resume


class NoValidCandidate(Exception):
    """The run finished without a single valid new prompt (see ``AlignmentArtifact.no_valid_candidate``)."""

    def __init__(self, artifact: AlignmentArtifact, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.artifact, self.run_dir = artifact, run_dir


def resume_command(run_dir: Path, checkpointer: str | None) -> str:
    """The command that continues a run (a checkpointer URL with a password is not repeated)."""
    command = f"drpo resume {shlex.quote(str(run_dir))}"
    if checkpointer is None:
        return command
    shown = scrub_secrets(checkpointer)
    secret = shown != checkpointer or "password=" in checkpointer.lower()  # also ?password=...
    return f"{command} --checkpointer " + ("URL (the same PostgreSQL URL)" if secret else shlex.quote(shown))


class Checkpointed:
    """Whether the run reached a checkpoint in this process: its first graph step ended."""

    def __init__(self) -> None:
        self.reached = False

    def watching(self, on_progress: ProgressCallback) -> ProgressCallback:
        """``on_progress``, noting that a step ended (the graph reports each step once it is saved)."""

        def watched(event: ProgressEvent) -> None:
            self.reached = True
            on_progress(event)

        return watched


@contextmanager
def resumable(run_dir: Path, checkpointer: str | None) -> Iterator[Checkpointed]:
    """Mark whatever stops the run from here on as resumable (``main`` says how), once it has
    reached a checkpoint (pass ``on_progress`` through :meth:`Checkpointed.watching`). Before
    that, an error is said as it is: nothing ran, and the same command starts the run again."""
    progress = Checkpointed()
    try:
        yield progress
    except (typer.Exit, typer.Abort, NoValidCandidate, ResumeRefused):
        raise  # already reported, finished (nothing to resume), or a resume that changed nothing
    except (Exception, KeyboardInterrupt) as exc:
        if not progress.reached:
            raise
        raise Stopped(resume_command(run_dir, checkpointer)) from exc


def exit_of(exc: BaseException) -> tuple[int, str]:
    """The exit code and message for whatever ended a command."""
    if isinstance(exc, Stopped):
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return (
                EXIT_INTERRUPTED,
                f"interrupted. The run is saved up to this point; continue it with: {exc.resume}",
            )
        code, message = exit_of(exc.__cause__ or exc)
        return (
            code,
            f"{message.rstrip('.')}. The run is saved up to this point; continue it with: {exc.resume}",
        )
    if isinstance(exc, NoValidCandidate):
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
    if isinstance(exc, sqlite3.Error):  # e.g. a read-only or damaged run directory's database
        return EXIT_FAILED, f"database error: {exc}"
    return EXIT_FAILED, (
        f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; DRPO_DEBUG=1 shows the traceback)"
    )
