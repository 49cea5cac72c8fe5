"""The ``drpo`` command with a fixed run id, optionally pausing before a critique recall so a test
can stop the Chroma server at a known point (``tests/test_memory_resume.py``).

Usage: python -m tests.chroma_outage RUN_ID [PAUSED GO] -- DRPO_ARGS...

With PAUSED and GO, the second critique recall (level 2's rewrite) creates the file PAUSED, waits
until the file GO exists (the test has killed the server by then), and goes on: it finds the
server gone. RUN_ID replaces the CLI's timestamp, so two runs of a test can be compared record
for record (critique ids and their tie-break order include the run id).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any


def _pause_second_recall(paused: Path, go: Path) -> None:
    from drpo_agents.memory import ChromaCritiqueMemory

    recall = ChromaCritiqueMemory.recall
    calls = 0

    def pausing(self: ChromaCritiqueMemory, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            paused.write_text("paused", encoding="utf-8")
            for _ in range(1200):  # at most 2 minutes
                if go.exists():
                    break
                threading.Event().wait(0.1)
        return recall(self, *args, **kwargs)

    ChromaCritiqueMemory.recall = pausing  # type: ignore[method-assign]


def main() -> None:
    split = sys.argv.index("--")
    run_id, extra, drpo_args = sys.argv[1], sys.argv[2:split], sys.argv[split + 1 :]
    if extra:
        _pause_second_recall(Path(extra[0]), Path(extra[1]))
    import drpo_agents.cli.run as cli_run

    cli_run.new_run_id = lambda: run_id
    sys.argv = ["drpo", *drpo_args]
    from drpo_agents.cli import main as drpo_main

    drpo_main()


if __name__ == "__main__":
    main()
