"""A DRPO run in its own process that can SIGKILL itself mid-run, for the resume tests.

Usage: python -m tests.crash_runner RUN_DIR LOG_DIR {start|resume} [KILL_ROLE KILL_AT] [CHECKPOINTER_URL]

Every model call that reaches the (sandbox) model appends its key to LOG_DIR/generated.log;
every response durably stored in the response journal appends its key to LOG_DIR/finished.log
(the key: the call's identity, prompt and model, as the journal keys it). With KILL_ROLE/KILL_AT
the process kills itself (SIGKILL, no cleanup) when the KILL_AT-th call of that role has been
generated, before its result is stored; KILL_ROLE ``journal`` kills it right after the KILL_AT-th
response was journalled, before its task can be checkpointed. ``CRASH_CACHE_POLICY`` sets
``config.cache`` (default ``all``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from langchain_core.load import dumps

from drpo_agents import DRPOConfig, load_training_queries, optimize, resume
from drpo_agents.infra.call_identity import current_call
from drpo_agents.infra.journal import ResponseJournal
from drpo_agents.models.sandbox import SandboxJudge, SandboxResponder, SandboxRewriter

CONFIG = DRPOConfig(
    depth=3,
    beam_size=2,
    n_actions=3,
    queries_per_step=2,
    max_concurrency=4,
    cache=os.environ.get("CRASH_CACHE_POLICY", "all"),
    seed=5,
)
_lock = threading.Lock()
_counts: dict[str, int] = {}


def _append(path: Path, line: str) -> None:
    with _lock, path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _key(prompt: str, llm_string: str) -> str:
    identity = current_call()
    where = [identity.scope, identity.path] if identity else []
    return hashlib.sha256(json.dumps([*where, prompt, llm_string]).encode()).hexdigest()[:16]


def _cache_key(model: Any, messages: Any, stop: Any, kwargs: Any) -> str:
    """The key LangChain's cache (and so the journal) files this call under."""
    prompt = dumps([m.model_copy(update={"id": None}) if getattr(m, "id", None) else m for m in messages])
    return _key(prompt, model._get_llm_string(stop=stop, **kwargs))


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
                _append(log_dir / "generated.log", f"{role} {_cache_key(self, messages, stop, kwargs)}")
                if role == kill_role and number == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return result

        return Counted

    # Log a call as finished only once its response is durably in the journal.
    original_record = ResponseJournal.record
    journalled = 0

    def record(self: ResponseJournal, identity: Any, prompt: str, llm_string: str, response: Any) -> None:
        nonlocal journalled
        original_record(self, identity, prompt, llm_string, response)
        _append(log_dir / "finished.log", _key(prompt, llm_string))
        with _lock:
            journalled += 1
            if kill_role == "journal" and journalled == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    ResponseJournal.record = record  # type: ignore[method-assign]
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
