"""README's two commands stay true: read from README.md itself, checked against the CLI, pyproject and CI.

``.ci/run`` runs command 1 verbatim (the real main job) and ends with command 2's test command;
these tests check, without running the long job, that every piece of the commands exists.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import tomllib
from typing import Any

import pytest
import typer

from drpo_agents.cli import app

from .conftest import REPO_ROOT


def _readme_commands() -> list[str]:
    spec = importlib.util.spec_from_file_location("readme_commands", REPO_ROOT / ".ci" / "readme_commands.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commands: list[str] = module.readme_commands()
    return commands


def _steps(command: str) -> list[list[str]]:
    """The ``&&``-joined steps of a command, each split like a shell would (no subshells used)."""
    return [shlex.split(step) for step in command.split("&&")]


def _parse_drpo(args: list[str]) -> Any:
    """Parse ``drpo ARGS`` with the real CLI's parser, without running the command (returns the
    subcommand's context; an unknown option or a bad value raises)."""
    group: Any = typer.main.get_command(app)  # typer's (vendored) click group
    name, *rest = args
    parent = group.make_context("drpo", [name])
    sub = group.get_command(parent, name)
    assert sub is not None, f"no drpo command {name!r}"
    return sub.make_context(name, rest, parent=parent)


def _extras() -> set[str]:
    pyproject: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(pyproject["project"]["optional-dependencies"])


def test_readme_has_exactly_two_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "drpo optimize" in commands[0] and "pytest" in commands[1]


def test_command_one_runs_offline_and_every_step_exists() -> None:
    command = _readme_commands()[0]
    assert "OPENAI_API_KEY" not in command and "--base-url" not in command
    drpo_steps = [step for step in _steps(command) if step[0] == ".venv/bin/drpo"]
    assert [step[1] for step in drpo_steps][-1] == "optimize"
    for step in drpo_steps:
        ctx = _parse_drpo(step[1:])  # an unknown flag or a bad value raises here
        if step[1] == "optimize":
            responder = ctx.params["responder"]
            judge = ctx.params["judge"]
            # No API key: every role is the embedded model or the sandbox.
            assert responder.startswith("local:") and (judge or "").startswith("sandbox")
    for step in _steps(command):
        if step[:2] == [".venv/bin/pip", "install"]:
            targets = [arg for arg in step[2:] if not arg.startswith("-")]
            for target in targets:
                extras = target.partition("[")[2].rstrip("]")
                assert set(filter(None, extras.split(","))) <= _extras(), target


def test_command_two_is_what_ci_runs() -> None:
    command = _readme_commands()[1]
    steps = _steps(command)
    assert steps[-1][0] == ".venv/bin/pytest"
    test_command = shlex.join(steps[-1])
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert ci_lines[-1] == test_command, "the last thing .ci/run does is README's test command"
    install = next(step for step in steps if step[:2] == [".venv/bin/pip", "install"])
    assert "dev" in install[-1].partition("[")[2], "command 2 installs the dev extra the tests need"


def test_ci_runs_command_one_verbatim() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "readme_commands.py 1" in ci, ".ci/run must take command 1 from README.md, not a copy"


def test_fresh_clone_tool_reads_the_same_commands() -> None:
    """``../shared/tools/fresh-clone`` (the newcomer check) extracts the same two commands."""
    tool = REPO_ROOT.parent / "shared" / "tools" / "fresh-clone"
    if not tool.is_file():
        pytest.skip(f"{tool} not present")
    line = next(line for line in tool.read_text(encoding="utf-8").splitlines() if line.startswith("cmds="))
    extraction = line.removeprefix("cmds=$(").removesuffix(")").replace('"$root/README.md"', "README.md")
    result = subprocess.run(
        ["bash", "-c", extraction], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert [cmd.strip() for cmd in result.stdout.splitlines()] == _readme_commands()
