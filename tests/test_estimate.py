"""The run estimate against real sandbox runs, the max_cost budget's price arithmetic, and ``--estimate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from drpo_agents import DRPOConfig, load_training_queries, optimize
from drpo_agents.cli import app
from drpo_agents.config import ModelPrice
from drpo_agents.errors import DRPOError
from drpo_agents.models.sandbox.chat import SandboxChatModel
from drpo_agents.search.budget import cost_of, spent
from drpo_agents.search.estimate import OutputLengths, RunEstimate, estimate_run

# The sandbox's replies, measured once from the artifacts of sandbox runs (answers ~180-250
# tokens, 4-5 aspects of ~23 tokens each, ~140-token aspect selections, ~45-token proposal
# analyses, ~18 tokens per added bullet): one calibration for every configuration below.
SANDBOX_LENGTHS = OutputLengths(
    answer=210, aspects_per_query=4, score_per_aspect=26, aspect_selection=140, proposal=45, prompt_bullet=18
)
TOLERANCE = 0.25

CONFIGS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "small": ({"beam_size": 2, "n_actions": 2, "depth": 4, "queries_per_step": 2, "seed": 3}, []),
    "icl_stage": (
        {"beam_size": 2, "n_actions": 2, "depth": 3, "queries_per_step": 2, "seed": 3, "icl_iters": 2},
        [],
    ),
    "validation": (
        {"beam_size": 3, "n_actions": 2, "depth": 3, "queries_per_step": 3, "seed": 1, "validation_size": 6},
        [],
    ),
    "gate_jury": (
        {
            "beam_size": 2,
            "n_actions": 3,
            "depth": 3,
            "queries_per_step": 2,
            "seed": 2,
            "validation_size": 4,
            "acceptance_gate": True,
            "jury_size": 2,
        },
        ["sandbox:7"],
    ),
}


def _run(config: DRPOConfig, jury: list[str], tmp_path: Path) -> dict[str, dict[str, int]]:
    artifact = optimize(
        load_training_queries()[:60],
        responder="sandbox",
        judge="sandbox",
        config=config,
        memory=str(tmp_path / "memory"),
        jury=jury,
    )
    return {role: usage.model_dump() for role, usage in artifact.usage.items()}


def _estimate(config: DRPOConfig, jury: list[str]) -> RunEstimate:
    return estimate_run(
        config, load_training_queries()[:60], jurors=len(jury), output_lengths=SANDBOX_LENGTHS
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_estimate_is_within_a_quarter_of_a_sandbox_runs_usage(name: str, tmp_path: Path) -> None:
    fields, jury = CONFIGS[name]
    config = DRPOConfig(**fields)
    actual = _run(config, jury, tmp_path)
    estimate = _estimate(config, jury)
    assert set(estimate.roles) == set(actual)
    for role, used in actual.items():
        for key in ("calls", "input_tokens", "output_tokens"):
            ratio = estimate.roles[role][key] / used[key]  # type: ignore[literal-required]
            assert abs(ratio - 1) <= TOLERANCE, f"{name} {role} {key}: estimate/actual = {ratio:.2f}"


def test_a_run_with_depth_extensions_lies_between_the_estimate_and_its_upper_bound(tmp_path: Path) -> None:
    # Deep enough that settled prompts are carried and extend the depth: the expected levels
    # (no extension) undercount, the upper bound (every extension) overcounts.
    config = DRPOConfig(beam_size=2, n_actions=3, depth=8, queries_per_step=1, seed=5)
    actual = _run(config, [], tmp_path)
    estimate = _estimate(config, [])
    calls = sum(u["calls"] for u in actual.values())
    assert estimate.calls <= calls <= estimate.upper_bound_calls
    assert estimate.levels == 8 and estimate.upper_bound_levels == 18


def test_the_price_comes_from_the_same_arithmetic_as_the_cost_budget() -> None:
    price = ModelPrice(input_per_million=2.0, output_per_million=8.0)
    config = DRPOConfig(depth=3, queries_per_step=2, prices={"gpt-x": price, "judge-y": price})
    models = {"responder": "openai:gpt-x", "judge": "judge-y", "rewriter": "judge-y"}
    estimate = estimate_run(config, load_training_queries()[:20], models=models)
    usage = {role: dict(r) for role, r in estimate.roles.items()}
    _, budget_cost = spent(config, models, usage)  # type: ignore[arg-type]
    assert estimate.cost == pytest.approx(budget_cost)
    responder = estimate.roles["responder"]
    assert responder["cost"] == cost_of(price, responder["input_tokens"], responder["output_tokens"])
    assert estimate.upper_bound_cost is not None and estimate.upper_bound_cost > estimate.cost
    # Without a price for a role there is no total.
    assert estimate_run(config, load_training_queries()[:20], models={"responder": "gpt-x"}).cost is None


def test_too_few_queries_fail_as_the_run_would() -> None:
    with pytest.raises(DRPOError, match="need at least"):
        estimate_run(DRPOConfig(queries_per_step=4), ["a?", "b?", "c?"])


def test_cli_estimate_prints_the_table_calls_no_model_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_call(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("--estimate called a model")

    monkeypatch.setattr(SandboxChatModel, "_generate", no_call)
    monkeypatch.chdir(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(
        json.dumps({"prices": {"sandbox": {"input_per_million": 1, "output_per_million": 2}}})
    )
    runner = CliRunner()
    args = ["optimize", "--sandbox", "--estimate", "--depth", "3", "--config", str(config_file)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for word in ("responder", "judge", "rewriter", "total", "input tokens", "Assumes"):
        assert word in result.output
    assert list(tmp_path.iterdir()) == [config_file]  # no run directory, no checkpoints
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["cost"] > 0
