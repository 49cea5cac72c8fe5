"""Golden runs: fixed-seed sandbox runs whose artifacts and trace node names are committed as test data.

The search core is being reshaped (modules split, typed records); these runs pin its behaviour.
``tests/test_golden.py`` re-runs each one and compares with ``tests/data/golden/NAME.json``.
After a change that is *meant* to change results, re-record and review the diff:

    .venv/bin/python -m tests.golden_runs            # rewrite every golden file
    .venv/bin/python -m tests.golden_runs default    # or some of them
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drpo_agents import DRPOConfig, load_training_queries, optimize
from drpo_agents.tracing import JsonlTracer

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"


@dataclass(frozen=True)
class GoldenRun:
    """One configuration: the config, the judge string and, for review runs, the reviewer's decision."""

    config: DRPOConfig
    judge: str = "sandbox"
    review: dict[str, str] | None = None
    queries: int = 60
    extra: dict[str, Any] = field(default_factory=dict)


_SMALL = {"beam_size": 2, "n_actions": 2, "depth": 4, "queries_per_step": 2, "seed": 3}

GOLDEN_RUNS: dict[str, GoldenRun] = {
    "default": GoldenRun(DRPOConfig(**_SMALL)),
    "trust": GoldenRun(
        DRPOConfig(
            **_SMALL,
            validation_size=8,
            red_team_validation_size=3,
            acceptance_gate=True,
            jury_size=2,
            length_normalization=True,
        ),
        judge="sandbox:3?noise=0.3&length_bias=1.0",
    ),
    "icl_stage": GoldenRun(DRPOConfig(**_SMALL, icl_iters=2)),
    "validation": GoldenRun(DRPOConfig(**_SMALL, validation_size=8)),
    "review_approve": GoldenRun(DRPOConfig(**_SMALL, review=True), review={"action": "approve"}),
    "review_edit": GoldenRun(
        DRPOConfig(**_SMALL, review=True),
        review={"action": "edit", "prompt": "You are a careful, honest assistant. Refuse harmful requests."},
    ),
    "review_reject": GoldenRun(DRPOConfig(**_SMALL, review=True), review={"action": "reject"}),
    "budget": GoldenRun(DRPOConfig(**{**_SMALL, "depth": 8}, max_tokens_budget=6000)),
}


def run_golden(name: str) -> dict[str, Any]:
    """The comparable result of one golden run: its artifact (``created_at`` left out) and the
    names of the graph nodes and named steps it ran, sorted (concurrent tasks finish in any order)."""
    spec = GOLDEN_RUNS[name]
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.jsonl"
        reviewer: Callable[[dict[str, Any]], Any] | None = (
            (lambda _request: spec.review) if spec.review is not None else None
        )
        artifact = optimize(
            load_training_queries()[: spec.queries],
            responder="sandbox",
            judge=spec.judge,
            config=spec.config,
            run_dir=Path(tmp) / "run",
            run_id=f"golden-{name}",
            memory=str(Path(tmp) / "memory"),
            reviewer=reviewer,
            callbacks=[JsonlTracer(trace)],
            **spec.extra,
        )
        records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    # Graph nodes and our own named steps, not LangChain's internal runnables (a leaner call path
    # may drop those without changing behaviour).
    nodes = sorted(
        r["name"]
        for r in records
        if r["name"] == (r.get("metadata") or {}).get("langgraph_node") or r["name"].startswith("drpo_")
    )
    return {"artifact": artifact.model_dump(mode="json", exclude={"created_at"}), "trace_nodes": nodes}


def golden_path(name: str) -> Path:
    """Where the golden result of ``name`` is stored."""
    return GOLDEN_DIR / f"{name}.json"


def record(names: list[str]) -> None:
    """Re-run ``names`` and overwrite their golden files."""
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        golden_path(name).write_text(
            json.dumps(run_golden(name), indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        print(f"recorded {golden_path(name)}")


if __name__ == "__main__":
    record(sys.argv[1:] or list(GOLDEN_RUNS))
