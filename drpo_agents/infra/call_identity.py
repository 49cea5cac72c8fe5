"""Which model call is running: a task scope plus the call's place in its plan, carried in a contextvar.

A plan driven for a task (a graph node's ``Send`` payload, an evaluation's answer or comparison)
runs under a *scope*: the task's name and the SHA-256 of its payload's canonical JSON. Each call
the plan yields gets a *path*: its ordinal in the plan (``0``, ``1``, ...), with ``i.j.`` in front
for the ``j``-th sub-plan of a :class:`~drpo_agents.infra.calls.ParallelPlans` yielded as item ``i``.
Scope and path are a function of the task's input and the plan's logic only, so a task re-run
after a crash names its calls exactly as the first attempt did; the response journal
(:mod:`drpo_agents.infra.journal`) keys its entries on them. Outside any scope there is no identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CallIdentity:
    """One model call: the task scope it belongs to and its path within the task's plan."""

    scope: str
    path: str


@dataclass(frozen=True)
class PlanPosition:
    """Where a plan runs: its task scope and the path prefix of its calls (``""`` for a task's own plan)."""

    scope: str
    prefix: str = ""

    def call(self, ordinal: int) -> CallIdentity:
        """The identity of the plan's ``ordinal``-th yielded item."""
        return CallIdentity(self.scope, f"{self.prefix}{ordinal}")

    def sub_plan(self, ordinal: int, index: int) -> PlanPosition:
        """The position of sub-plan ``index`` of the ``ParallelPlans`` yielded as item ``ordinal``."""
        return PlanPosition(self.scope, f"{self.prefix}{ordinal}.{index}.")


_current: ContextVar[CallIdentity | None] = ContextVar("drpo_call_identity", default=None)


def current_call() -> CallIdentity | None:
    """The identity of the model call running in this context, or None outside any task scope."""
    return _current.get()


@contextmanager
def calling(identity: CallIdentity | None) -> Iterator[None]:
    """Run the block as the call ``identity`` (None: as no identified call, whatever encloses it)."""
    token = _current.set(identity)
    try:
        yield
    finally:
        _current.reset(token)


def task_scope(name: str, payload: Any) -> str:
    """The scope of task ``name`` with input ``payload`` (JSON-able: sorted keys, exact text)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"{name}:{hashlib.sha256(text.encode('utf-8')).hexdigest()}"
