"""The directive-following and real-model benchmarks run end to end on the sandbox (no real model)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import real_model
from benchmarks.directive_following import (
    DIRECTIVES,
    conditions,
    measure,
    pick_queries,
    summarize,
    system_prompt,
)
from drpo_agents.models.sandbox import SandboxResponder, prompt_directives


def test_every_prompt_carries_exactly_its_directives_in_order() -> None:
    for _, directives, _ in conditions(8):
        assert prompt_directives(system_prompt(directives)) == directives


def test_the_smollm2_preset_follows_far_fewer_directives_than_the_default_world() -> None:
    queries = pick_queries(4)
    plan = conditions(1, ("n4", "n8"))
    default = summarize(measure(SandboxResponder(seed=0), queries, plan))
    calibrated = summarize(measure(SandboxResponder(seed=0, preset="smollm2"), queries, plan))
    assert set(default["per_directive"]) == set(DIRECTIVES)
    assert default["by_condition"]["n4"]["follow_rate"] > 0.5
    assert calibrated["by_condition"]["n4"]["follow_rate"] < 0.3


def test_real_model_benchmark_runs_on_a_sandbox_responder(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    status = real_model.main(
        [
            "--seeds", "0",
            "--held-out", "3",
            "--responder", "sandbox:{seed}?preset=smollm2",
            "--variant", 'tiny={"depth": 1}',
            "--workdir", str(tmp_path / "runs"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["responder"] == "sandbox:{seed}?preset=smollm2"
    assert [(r["variant"], r["seed"]) for r in saved["rows"]] == [("tiny", 0)]
