"""Token and call accounting per role, kept in graph state as plain dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.messages import AIMessage

UsageByRole = dict[str, dict[str, int]]


def usage_of(role: str, messages: Iterable[AIMessage]) -> UsageByRole:
    """Calls and tokens of ``messages`` (from their ``usage_metadata``), under ``role``."""
    calls = input_tokens = output_tokens = 0
    for message in messages:
        calls += 1
        meta: Mapping[str, Any] = message.usage_metadata or {}
        input_tokens += int(meta.get("input_tokens", 0))
        output_tokens += int(meta.get("output_tokens", 0))
    return {role: {"calls": calls, "input_tokens": input_tokens, "output_tokens": output_tokens}}


def merge_usage(
    left: Mapping[str, Mapping[str, int]] | None, right: Mapping[str, Mapping[str, int]] | None
) -> UsageByRole:
    """Reducer: add ``right``'s counts to ``left``'s, role by role."""
    merged: UsageByRole = {role: dict(counts) for role, counts in (left or {}).items()}
    for role, counts in (right or {}).items():
        target = merged.setdefault(role, {})
        for key, value in counts.items():
            target[key] = target.get(key, 0) + int(value)
    return merged
