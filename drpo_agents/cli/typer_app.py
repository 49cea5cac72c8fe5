"""The ``drpo`` Typer app, its stderr console and the options several commands share."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="drpo",
    help="Tuning-free self-alignment of language models with DRPO (Dynamic Rewarding with Prompt Optimization).",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: it wraps long option names at any width instead of cutting them (rich tables did at 80).
    rich_markup_mode=None,
)
console = Console(stderr=True)
"""Progress, prompts, warnings and errors (stdout carries only results)."""


def _print_version(value: bool) -> None:
    if value:
        from drpo_agents import __version__

        typer.echo(f"drpo-agents {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    chroma_token_file: Annotated[
        Path | None,
        typer.Option(
            "--chroma-token-file",
            metavar="FILE",
            help="Token for a Chroma server behind an authenticating proxy, read from FILE "
            "(instead of DRPO_CHROMA_TOKEN; see docs/SECURITY.md).",
        ),
    ] = None,
) -> None:
    """Tuning-free self-alignment of language models with DRPO (Dynamic Rewarding with Prompt Optimization)."""
    if chroma_token_file is not None:
        from drpo_agents.errors import DRPOWarning
        from drpo_agents.memory.chroma_connection import CHROMA_TOKEN_ENV, read_token_file

        # The environment, not an argument: it is where the client reads it, and where the
        # secret scrubbing of every trace line and message looks for values to hide.
        token = read_token_file(chroma_token_file)
        if os.environ.get(CHROMA_TOKEN_ENV, token) != token:
            warnings.warn(
                f"--chroma-token-file replaces the token in {CHROMA_TOKEN_ENV}", DRPOWarning, stacklevel=1
            )
        os.environ[CHROMA_TOKEN_ENV] = token


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
