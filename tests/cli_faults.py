"""The ``drpo`` command with a fault injected, for the CLI error tests (``tests/test_cli_errors.py``).

Usage: python -m tests.cli_faults FAULT [MARKER] -- DRPO_ARGS...

FAULT is one of:

* ``enospc``: writing the artifact fails with "No space left on device" (a full disk), after
  the whole search has run and been checkpointed.
* ``erofs``: every file write fails with "Read-only file system" (what ``chmod`` cannot
  simulate for root, who writes anyway).
* ``bug``: writing the HTML report raises ``RuntimeError`` (an error no layer expects: a bug).
* ``hang-rewriter MARKER``: the second sandbox rewriter call (level 2's first) creates the file
  MARKER and then hangs, so the test can interrupt the run (SIGINT) at a known point.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from pathlib import Path
from typing import Any


def _refuse(code: int, only: str | None = None) -> None:
    """Make ``Path.write_text`` and ``Path.mkdir`` fail with ``code`` (for files named ``only``)."""
    write_text, mkdir = Path.write_text, Path.mkdir

    def failing_write(self: Path, *args: Any, **kwargs: Any) -> int:
        if only is None or self.name == only:
            raise OSError(code, os.strerror(code), str(self))
        return write_text(self, *args, **kwargs)

    def failing_mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if only is None:
            raise OSError(code, os.strerror(code), str(self))
        mkdir(self, *args, **kwargs)

    Path.write_text = failing_write  # type: ignore[method-assign]
    Path.mkdir = failing_mkdir  # type: ignore[method-assign]


def _hang_rewriter(marker: Path) -> None:
    from drpo_agents.models.sandbox import SandboxRewriter

    generate = SandboxRewriter._generate
    calls = 0
    lock = threading.Lock()

    def hanging(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            number = calls
        if number == 2:
            marker.write_text("hanging", encoding="utf-8")
            threading.Event().wait(120)  # until the process is interrupted (and exits without us)
        return generate(self, *args, **kwargs)

    SandboxRewriter._generate = hanging  # type: ignore[method-assign]


def main() -> None:
    split = sys.argv.index("--")
    fault, extra, drpo_args = sys.argv[1], sys.argv[2:split], sys.argv[split + 1 :]
    if fault == "enospc":
        _refuse(errno.ENOSPC, only="artifact.json.tmp")
    elif fault == "erofs":
        _refuse(errno.EROFS)
    elif fault == "bug":
        import drpo_agents.report

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom in the report")

        drpo_agents.report.write_run_report = broken
    elif fault == "hang-rewriter":
        _hang_rewriter(Path(extra[0]))
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    sys.argv = ["drpo", *drpo_args]
    from drpo_agents.cli import main as drpo_main

    drpo_main()


if __name__ == "__main__":
    main()
