"""Topology snapshots: the search graph's Mermaid drawing for its main configurations.

A change to the graph's nodes or edges shows up here as a diff of a committed drawing. After
an intended change, re-record and review the diff:

    .venv/bin/python -m tests.test_topology
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from drpo_agents import DRPOConfig, create_drpo_graph

TOPOLOGY_DIR = Path(__file__).parent / "data" / "topology"

CONFIGURATIONS: dict[str, DRPOConfig] = {
    "default": DRPOConfig(),
    "icl_iters": DRPOConfig(icl_iters=2),
    "validation_size": DRPOConfig(validation_size=8),
    "acceptance_gate": DRPOConfig(validation_size=8, acceptance_gate=True),
    "review": DRPOConfig(review=True),
}


def draw(name: str) -> str:
    """The Mermaid drawing of the search graph under configuration ``name``."""
    graph = create_drpo_graph("sandbox", "sandbox", config=CONFIGURATIONS[name]).compile()
    return graph.get_graph().draw_mermaid()


def snapshot_path(name: str) -> Path:
    return TOPOLOGY_DIR / f"{name}.mmd"


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_topology_matches_its_snapshot(name: str) -> None:
    expected = snapshot_path(name).read_text(encoding="utf-8")
    assert draw(name) == expected, f"the {name} graph changed: re-record with python -m tests.test_topology"


def test_configurations_add_their_nodes() -> None:
    nodes = {
        name: set(create_drpo_graph("sandbox", "sandbox", config=c).nodes)
        for name, c in CONFIGURATIONS.items()
    }
    base = nodes["default"]
    assert nodes["icl_iters"] - base == {"icl_stage"}
    assert nodes["acceptance_gate"] - base == {"validate", "gate"}
    assert nodes["review"] - base == {"review"}
    assert nodes["validation_size"] - base == {
        "select_validation_aspects",
        "dispatch_validation",
        "validate",
        "rank_validation",
    }


def record(names: list[str]) -> None:
    """Re-draw ``names`` and overwrite their snapshots."""
    TOPOLOGY_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        snapshot_path(name).write_text(draw(name), encoding="utf-8")
        print(f"recorded {snapshot_path(name)}")


if __name__ == "__main__":
    record(sys.argv[1:] or sorted(CONFIGURATIONS))
