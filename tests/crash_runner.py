"""A DRPO run in its own process that can SIGKILL itself mid-run, for the resume tests.

Usage: python -m tests.crash_runner RUN_DIR LOG_DIR {start|resume} [KILL_ROLE KILL_AT] [CHECKPOINTER_URL]

Every model call that reaches the (sandbox) model appends its key to LOG_DIR/generated.log;
every response durably stored in the LLM cache appends its key to LOG_DIR/finished.log. With
KILL_ROLE/KILL_AT the process kills itself (SIGKILL, no cleanup) when the KILL_AT-th call of that
role has been generated, before its result is stored.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from drpo_agents import DRPOConfig, load_training_queries, optimize, resume
from drpo_agents.cache import SQLiteLLMCache
from drpo_agents.models.sandbox import SandboxJudge, SandboxResponder, SandboxRewriter

CONFIG = DRPOConfig(
    depth=3, beam_size=2, n_actions=3, queries_per_step=2, max_concurrency=4, cache="all", seed=5
)
_lock = threading.Lock()
_counts: dict[str, int] = {}


def _append(path: Path, line: str) -> None:
    with _lock, path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _key(messages: Any) -> str:
    return hashlib.sha256(repr([(type(m).__name__, m.content) for m in messages]).encode()).hexdigest()[:16]


def main() -> None:
    run_dir, log_dir, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    kill_role = sys.argv[4] if len(sys.argv) > 5 else None
    kill_at = int(sys.argv[5]) if len(sys.argv) > 5 else -1
    checkpointer = sys.argv[6] if len(sys.argv) > 6 else None
    log_dir.mkdir(parents=True, exist_ok=True)

    def counted(base: type) -> type:
        class Counted(base):  # type: ignore[misc, valid-type]
            def _generate(
                self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
            ) -> Any:
                result = super()._generate(messages, stop, run_manager, **kwargs)
                role = self.role_name
                with _lock:
                    _counts[role] = _counts.get(role, 0) + 1
                    number = _counts[role]
                _append(log_dir / "generated.log", f"{role} {_key(messages)}")
                if role == kill_role and number == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return result

        return Counted

    # Log a call as finished only once its response is durably in the cache.
    original_update = SQLiteLLMCache.update

    def update(self: SQLiteLLMCache, prompt: str, llm_string: str, return_val: Any) -> None:
        original_update(self, prompt, llm_string, return_val)
        _append(log_dir / "finished.log", hashlib.sha256((prompt + llm_string).encode()).hexdigest()[:16])

    SQLiteLLMCache.update = update  # type: ignore[method-assign]
    models = {
        "responder": counted(SandboxResponder)(seed=0),
        "judge": counted(SandboxJudge)(seed=0),
        "rewriter": counted(SandboxRewriter)(seed=0),
    }
    if mode == "start":
        optimize(
            load_training_queries()[:40],
            config=CONFIG,
            run_dir=run_dir,
            run_id="crash-test",
            checkpointer=checkpointer,
            **models,
        )
    else:
        resume(run_dir, checkpointer=checkpointer, **models)


if __name__ == "__main__":
    main()
