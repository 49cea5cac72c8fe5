"""The public surface: the root's entry points, the deprecated root aliases, the real signatures
of ``optimize``/``resume``, and the one home of run-directory file names."""

from __future__ import annotations

import importlib
import inspect

import pytest

import drpo_agents
from drpo_agents import api, tracing
from drpo_agents.cli import CLI_FILE
from drpo_agents.infra import run_files


def test_the_root_exports_only_the_entry_points() -> None:
    assert 12 <= len(drpo_agents.__all__) <= 15
    for name in drpo_agents.__all__:
        assert getattr(drpo_agents, name) is not None


@pytest.mark.parametrize("name", sorted(drpo_agents._MOVED))
def test_a_moved_name_still_imports_from_the_root_with_a_warning(name: str) -> None:
    module = drpo_agents._MOVED[name]
    with pytest.warns(DeprecationWarning, match=f"use: from {module} import {name}"):
        value = getattr(drpo_agents, name)
    assert value is getattr(importlib.import_module(module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        drpo_agents.no_such_name  # noqa: B018


@pytest.mark.parametrize(("blocking", "awaiting"), [(api.optimize, api.aoptimize), (api.resume, api.aresume)])
def test_blocking_calls_take_the_async_twins_parameters(blocking: object, awaiting: object) -> None:
    def shape(function: object) -> list[tuple[str, object, object]]:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        return [(p.name, p.kind, p.default) for p in parameters]

    assert shape(blocking) == shape(awaiting)
    assert all(p.kind is not p.VAR_KEYWORD for p in inspect.signature(blocking).parameters.values())  # type: ignore[arg-type]


def test_run_file_names_have_one_home() -> None:
    assert run_files.ARTIFACT_FILE == "artifact.json" and run_files.CONFIG_FILE == "config.json"
    assert run_files.CHECKPOINT_FILE == "checkpoints.sqlite" and run_files.CACHE_FILE == "llm_cache.sqlite"
    assert tracing.TRACE_FILE == run_files.TRACE_FILE == "trace.jsonl"
    assert CLI_FILE == run_files.CLI_FILE == "cli.json"


def test_the_cli_lists_the_run_commands_first() -> None:
    from drpo_agents.cli import app

    names = [command.name for command in app.registered_commands]
    assert names == [
        "optimize",
        "resume",
        "realign",
        "evaluate",
        "import-official",
        "inspect",
        "report",
        "chat",
        "install-local",
    ]
