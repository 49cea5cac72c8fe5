"""The ``drpo`` command line. Thin: it parses options, calls the public API and renders progress.

Modules: ``typer_app`` (the Typer app and shared options), ``build`` (config and models from the
flags), ``errors`` (the error mapping below), ``run`` (``optimize``), ``resume``, ``realign``, ``summary``
(progress bar, run summary), ``inspection`` (``drpo inspect``), ``commands`` (every other
command), ``dispatch`` (the app with every command, run with the mapping below). This package
itself imports none of them until :func:`main` runs, so a Ctrl-C in the first second, while
they load, is one ``error: interrupted`` line too.

Exit codes:

* 0: success.
* 1: the run failed: a service it needs cannot be reached (model endpoint, Chroma server,
  PostgreSQL), the file system refused a write (read-only directory, disk full), or a model
  error stopped it. Work done so far stays in the run directory; the message says how to resume.
* 2: invalid usage, configuration or input (a missing API key, an unknown provider, a bad flag
  or file, a damaged or foreign run directory given to ``resume``, a change a resume refuses:
  another model without ``--allow-model-change``, levels a run has no queries for).
* 3: the run finished but produced no valid candidate: every rewrite or every evaluation of
  every level that tried failed, so the "best" prompt is only the initial one. The artifact is
  still written (``drpo inspect`` shows the failures per role).
* 130: interrupted (Ctrl-C); the message gives the ``drpo resume`` command that continues it.

Files and folders the command creates are owner-only (umask 077); folders that exist keep their
mode. Every failure is one ``error:`` line on stderr, never a traceback (set ``DRPO_DEBUG=1`` to get
the traceback of an unexpected error), and never shows a secret.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drpo_agents.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_CANDIDATE, EXIT_USAGE
    from drpo_agents.cli.typer_app import app
    from drpo_agents.infra.run_files import CLI_FILE

__all__ = ["CLI_FILE", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_NO_CANDIDATE", "EXIT_USAGE", "app", "main"]


def main() -> None:
    """Entry point of the ``drpo`` script: load the commands, run the one asked for, and map
    whatever stopped it to one ``error:`` line and an exit code (see the module docstring)."""
    try:
        from drpo_agents.cli.dispatch import run_command
    except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing ran, nothing to keep
        sys.stderr.write("error: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    run_command()


def __getattr__(name: str) -> Any:
    """The app and the exit codes, loaded with the commands when first asked for."""
    if name in __all__:
        return getattr(importlib.import_module("drpo_agents.cli.dispatch"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
