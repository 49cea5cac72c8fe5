"""``drpo optimize --estimate``: the run's expected calls, tokens and price per role, as a table."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from drpo_agents.cli.build import ModelSpecs
from drpo_agents.cli.errors import fail
from drpo_agents.cli.summary import print_table
from drpo_agents.config import DRPOConfig
from drpo_agents.errors import DRPOError
from drpo_agents.schemas import ICLExample
from drpo_agents.search.estimate import estimate_run


def _money(cost: float | None) -> str:
    return f"{cost:.4f}" if cost is not None else "-"


def show_estimate(
    config: DRPOConfig,
    queries: Sequence[Any],
    examples: Sequence[ICLExample] | None,
    specs: ModelSpecs,
    as_json: bool,
) -> None:
    """Print what the run would cost (no model is built or called, nothing is written)."""
    judge = specs["judge"]
    named = {
        "responder": specs["responder"],
        "judge": judge,
        "rewriter": specs["rewriter"] or judge,
        "jury": ", ".join(specs["jury"]) or None,
    }
    models = {role: spec for role, spec in named.items() if spec}
    try:
        estimate = estimate_run(
            config, queries, models=models, jurors=len(specs["jury"]), icl_examples=examples
        )
    except DRPOError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        sys.stdout.write(estimate.model_dump_json(indent=2) + "\n")
        return
    rows = [
        [role, f"{r['calls']:,}", f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", _money(r["cost"])]
        for role, r in estimate.roles.items()
    ]
    rows.append(
        [
            "total",
            f"{estimate.calls:,}",
            f"{estimate.input_tokens:,}",
            f"{estimate.output_tokens:,}",
            _money(estimate.cost),
        ]
    )
    print_table(
        "Estimated cost (no model called)", ["role", "calls", "input tokens", "output tokens", "price"], rows
    )
    note = (
        "" if estimate.cost is not None else " No price for some role: add its model to the config's prices."
    )
    sys.stdout.write(f"Assumes {estimate.assumptions}{note}\n")
