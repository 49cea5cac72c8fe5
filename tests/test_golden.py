"""Behaviour pins: fixed-seed sandbox runs must reproduce their committed artifacts and trace node names.

See ``tests/golden_runs.py`` for the configurations and how to re-record after an intended change.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .golden_runs import GOLDEN_RUNS, golden_path, run_golden


def _first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where two JSON values first differ, as a readable path (for a useful failure message)."""
    if type(expected) is not type(actual):
        return f"{path}: {type(expected).__name__} != {type(actual).__name__}"
    if isinstance(expected, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in expected or key not in actual:
                return f"{path}.{key}: only in {'actual' if key in actual else 'golden'}"
            found = _first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        for index, (a, b) in enumerate(zip(expected, actual, strict=False)):
            found = _first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        return None if len(expected) == len(actual) else f"{path}: {len(expected)} != {len(actual)} items"
    return None if expected == actual else f"{path}: {expected!r} != {actual!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GOLDEN_RUNS))
def test_golden_run_is_reproduced(name: str) -> None:
    golden = json.loads(golden_path(name).read_text(encoding="utf-8"))
    actual = json.loads(json.dumps(run_golden(name)))  # the same JSON types as the stored file
    difference = _first_difference(golden, actual)
    assert difference is None, f"{name} differs from {golden_path(name).name} at {difference}"


def test_first_difference_names_the_path() -> None:
    assert _first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == "$.a[1].b: 2 != 3"
    assert _first_difference({"a": 1}, {"a": 1, "c": 0}) == "$.c: only in actual"
    assert _first_difference([1, 2], [1]) == "$: 2 != 1 items"
    assert _first_difference({"x": [1]}, {"x": [1]}) is None
