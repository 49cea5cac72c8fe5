"""What ships: prompt templates load by name (from a built wheel too), and the deployable graph imports."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from drpo_agents.errors import PromptTemplateError
from drpo_agents.prompts import available_prompts, load_prompt, render_prompt

from .conftest import REPO_ROOT

EXPECTED = {
    "aspect_selection",
    "answer_scoring",
    "completion_example",
    "completion_responder",
    "judge_system",
    "prompt_rewrite",
    "rewrite_case",
    "rewriter_system",
    "structured_output_format",
    "structured_output_retry",
}


def test_every_template_is_available_and_parses() -> None:
    assert set(available_prompts()) >= EXPECTED
    for name in EXPECTED:
        assert load_prompt(name).get_identifiers() is not None


def test_missing_variable_and_unknown_template_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptTemplateError, match="needs variable 'query'"):
        render_prompt("aspect_selection", None, aspect_catalog="x", conversation="")
    with pytest.raises(PromptTemplateError, match="no prompt template named 'nope'"):
        load_prompt("nope")


def test_prompts_dir_overrides_a_template_by_name(tmp_path: Path) -> None:
    (tmp_path / "judge_system.md").write_text("You are a terse judge.", encoding="utf-8")
    assert render_prompt("judge_system", tmp_path) == "You are a terse judge."
    assert "strict, fair" in render_prompt("judge_system")


def test_deployable_graph_module_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRPO_SERVER_DIR", str(tmp_path / "server"))  # its stores, outside the checkout
    spec = importlib.util.spec_from_file_location("drpo_graph_module", REPO_ROOT / "graphs" / "drpo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.graph.get_graph().nodes) >= {
        "prepare",
        "rewrite",
        "evaluate",
        "select_beam",
        "finalize",
    }


@pytest.mark.slow
def test_built_wheel_ships_and_loads_every_template(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        check=True,
    )
    wheel = next(tmp_path.glob("drpo_agents-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"drpo_agents/_prompts/{n}.md" for n in EXPECTED} <= set(names)
    assert "drpo_agents/data/train_queries.jsonl" in names and "drpo_agents/py.typed" in names
    assert {"drpo_agents/report/report.css", "drpo_agents/report/report.js"} <= set(names)
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # Import from the unpacked wheel, not the checkout, and load every template from inside the package.
    code = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); "
        "import drpo_agents, drpo_agents.prompts as p; "
        f"assert drpo_agents.__file__.startswith({str(unpacked)!r}), drpo_agents.__file__; "
        "assert p.packaged_prompts_dir().name == '_prompts'; "
        "[p.load_prompt(n) for n in p.available_prompts()]; "
        "assert len(drpo_agents.load_training_queries()) > 100; "
        "from drpo_agents.report import _CSS, _SCRIPT; assert '.kpi' in _CSS and 'cand-detail' in _SCRIPT; "
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip() == "ok", result.stderr
