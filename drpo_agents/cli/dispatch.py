"""The ``drpo`` command: every command registered on the app, and what stopped a command mapped
to one ``error:`` line and an exit code (see :mod:`drpo_agents.cli`)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import NoReturn, TextIO

import typer

# Typer (0.29+) runs its own copy of click; its usage errors are these classes.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

# Importing a command module registers its commands on the app, in the order `drpo --help` lists them.
from drpo_agents.cli import run  # noqa: F401  (optimize)

# isort: split
from drpo_agents.cli import resume  # noqa: F401  (resume)

# isort: split
from drpo_agents.cli import realign  # noqa: F401  (realign)

# isort: split
from drpo_agents.cli import commands  # noqa: F401  (evaluate, import-official, inspect, report, ...)

# isort: split
from drpo_agents.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_CANDIDATE,
    EXIT_USAGE,
    exit_of,
    print_error,
)
from drpo_agents.cli.typer_app import app
from drpo_agents.errors import DRPOWarning
from drpo_agents.infra.run_files import CLI_FILE

__all__ = [
    "CLI_FILE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_CANDIDATE",
    "EXIT_USAGE",
    "app",
    "run_command",
]


def run_command() -> None:
    """Run the command of ``sys.argv`` and map whatever stopped it to one ``error:`` line and an
    exit code (see :mod:`drpo_agents.cli`)."""
    if not os.environ.get("DRPO_DEBUG"):
        logging.getLogger("psycopg").addFilter(_drop_ignored_cleanup_errors)
    # What drpo writes holds every query, answer and critique: owner-only files (0600) and
    # folders (0700), whatever the shell's umask. Folders that exist keep their mode.
    os.umask(0o077)
    warnings.showwarning = _show_warning
    # Ctrl-C cancels the graph's tasks; langgraph drops the coroutine of a task that was still
    # waiting for a max_concurrency slot unstarted, and Python warns about it: noise, not a fault.
    warnings.filterwarnings(
        "ignore", message=r"coroutine 'a?run_with_retry' was never awaited", category=RuntimeWarning
    )
    try:
        code = app(standalone_mode=False)  # usage errors come back here, to be said in one line
        sys.exit(code if isinstance(code, int) else 0)
    except NoArgsIsHelpError as exc:  # `drpo` alone: the help, as a usage error
        typer.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(EXIT_USAGE)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "drpo"
        print_error(f"{exc.format_message()} (see: {command} --help)")
        sys.exit(EXIT_USAGE)
    except (typer.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        print_error("interrupted")
        exit_now(EXIT_INTERRUPTED)
    except Exception as exc:
        if os.environ.get("DRPO_DEBUG"):
            raise
        code, message = exit_of(exc)
        print_error(message)
        sys.stdout.flush()
        sys.stderr.flush()
        if code == EXIT_INTERRUPTED:
            exit_now(code)
        sys.exit(code)


def exit_now(code: int) -> NoReturn:
    """Exit at once: model calls still running in worker threads would hold a normal exit until
    they end (up to a client timeout), and the checkpoints already hold everything that finished."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_python_show_warning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Our warnings as one ``warning:`` line on stderr, like errors; any other as Python shows it."""
    if issubclass(category, DRPOWarning):
        print_error(str(message), prefix="warning")
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def _drop_ignored_cleanup_errors(record: logging.LogRecord) -> bool:
    """psycopg logs "error ignored in rollback / terminating / exiting" while it cleans up a
    connection that another error is leaving; that error is the one a person needs, and gets."""
    return not record.getMessage().startswith("error ignored")
