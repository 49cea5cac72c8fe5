"""``drpo evaluate --sandbox`` in its own process that can SIGKILL itself mid-way, for the restart test.

Usage: python -m tests.evaluate_runner LOG_DIR KILL_AT -- DRPO_EVALUATE_ARGS...

Logs as :mod:`tests.crash_runner` does (LOG_DIR/generated.log: every call that reaches a sandbox
model; LOG_DIR/finished.log: every response journalled). With KILL_AT > 0 the process kills
itself right after the KILL_AT-th response was journalled.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from drpo_agents.infra.journal import ResponseJournal
from drpo_agents.models.sandbox.chat import SandboxChatModel

from .crash_runner import _append, _cache_key, _key

_lock = threading.Lock()


def main() -> None:
    log_dir, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    arguments = sys.argv[sys.argv.index("--") + 1 :]
    log_dir.mkdir(parents=True, exist_ok=True)
    generate = SandboxChatModel._generate
    record = ResponseJournal.record
    journalled = 0

    def logged_generate(
        self: Any, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        result = generate(self, messages, stop, run_manager, **kwargs)
        _append(log_dir / "generated.log", f"{self.role_name} {_cache_key(self, messages, stop, kwargs)}")
        return result

    def logged_record(
        self: ResponseJournal, identity: Any, prompt: str, llm_string: str, response: Any
    ) -> None:
        nonlocal journalled
        record(self, identity, prompt, llm_string, response)
        _append(log_dir / "finished.log", _key(prompt, llm_string))
        with _lock:
            journalled += 1
            if journalled == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    SandboxChatModel._generate = logged_generate  # type: ignore[method-assign]
    ResponseJournal.record = logged_record  # type: ignore[method-assign]
    from drpo_agents.cli import app

    app(["evaluate", "--sandbox", *arguments])


if __name__ == "__main__":
    main()
