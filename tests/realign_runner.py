"""Realignment in its own process, for the kill tests.

``python -m tests.realign_runner round DEPLOY QUERIES KILL_AT``: one round that SIGKILLs itself at
the KILL_AT-th judge call (0: never). ``python -m tests.realign_runner promote DEPLOY A B``: promote
artifacts A and B in turn, forever, printing a line after each (the parent kills it at random).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from drpo_agents import DRPOConfig
from drpo_agents.artifact import load_artifact
from drpo_agents.models.sandbox import SandboxJudge
from drpo_agents.realign import Deployment, realign

CONFIG = DRPOConfig(depth=2, beam_size=2, n_actions=2, seed=0, max_concurrency=4)


def run_round(deploy_dir: str, queries: str, kill_at: int) -> None:
    lock, calls = threading.Lock(), [0]
    original = SandboxJudge._generate

    def counting(self: SandboxJudge, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    SandboxJudge._generate = counting  # type: ignore[method-assign]
    record = realign(deploy_dir, queries, responder="sandbox", judge="sandbox", config=CONFIG)
    print(record.decision, flush=True)


def promote_forever(deploy_dir: str, first: str, second: str) -> None:
    deployment = Deployment(deploy_dir)
    artifacts = [load_artifact(first), load_artifact(second)]
    step = 0
    while True:  # every promotion writes a new version and switches the pointer to it
        step += 1
        deployment.promote(artifacts[step % 2], f"v{step:04d}")
        print(step, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "round":
        run_round(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        promote_forever(sys.argv[2], sys.argv[3], sys.argv[4])
