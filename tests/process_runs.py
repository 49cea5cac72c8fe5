"""Test helpers for runs in their own process: start a ``tests.*`` module, read the lines it logged."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .conftest import REPO_ROOT


def run_module(
    module: str, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m module arguments...`` from the repository root, offline, with output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, "LANGSMITH_TRACING": "false", "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def lines(path: Path) -> list[str]:
    """The lines of a log file (none if the process never wrote it)."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def wait_for_file(process: subprocess.Popen[Any], path: Path, never: str, timeout: float = 120) -> None:
    """Poll until ``process`` creates ``path`` (a marker it writes at a chosen moment); fails with
    the process's output if it exits first, and with ``never`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, never
        threading.Event().wait(0.05)
