"""Run, memory and deployment folders are owner-only whatever the umask; the CLI's files too;
a folder that exists keeps its mode."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drpo_agents import load_training_queries, optimize
from drpo_agents.infra.run_files import private_folder

from .test_cli import ENV


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common umask 022, under which new files are readable by everyone."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_folder_is_owner_only_and_an_existing_one_keeps_its_mode(
    tmp_path: Path, open_umask: None
) -> None:
    made = private_folder(tmp_path / "parents" / "run")
    assert _mode(made) == 0o700
    assert _mode(tmp_path / "parents") == 0o755  # parents get the usual mode
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o775)
    shared.chmod(0o775)
    assert _mode(private_folder(shared)) == 0o775


def test_python_runs_keep_their_folder_and_memory_owner_only(tmp_path: Path, open_umask: None) -> None:
    optimize(
        load_training_queries()[:4],
        responder="sandbox",
        judge="sandbox",
        config={"depth": 1},
        run_dir=tmp_path / "run",
    )
    assert _mode(tmp_path / "run") == 0o700
    assert _mode(tmp_path / "run" / "memory") == 0o700
    team = tmp_path / "team-runs"
    team.mkdir()
    team.chmod(0o750)
    optimize(
        load_training_queries()[:4], responder="sandbox", judge="sandbox", config={"depth": 1}, run_dir=team
    )
    assert _mode(team) == 0o750


def test_what_the_cli_writes_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    command = [sys.executable, "-m", "drpo_agents", "optimize", "--sandbox", "--depth", "1", "-q"]
    ran = subprocess.run(
        [*command, "--run-dir", "run", "--memory", "shared/memory"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert ran.returncode == 0, ran.stderr
    written = [tmp_path / "run", *(tmp_path / "run").rglob("*"), *(shared / "memory").rglob("*")]
    exposed = [f"{oct(_mode(p))} {p.relative_to(tmp_path)}" for p in written if _mode(p) & 0o077]
    assert exposed == []
    assert len(written) > 10 and _mode(shared) == 0o755 and _mode(shared / "memory") == 0o700
