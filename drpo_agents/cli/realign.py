"""``drpo realign``: one realignment round in a deployment folder, fit for cron."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from drpo_agents.cli.build import build_model, build_models, load_config, model_specs
from drpo_agents.cli.errors import EXIT_FAILED, fail
from drpo_agents.cli.evaluation import FailUnderOption, MinWinRateOption
from drpo_agents.cli.options import (
    BeamSizeOption,
    ConfigOption,
    DepthOption,
    MaxConcurrencyOption,
    NActionsOption,
    RewriterOption,
    SeedOption,
)
from drpo_agents.cli.summary import print_json
from drpo_agents.cli.typer_app import AsJson, BaseUrl, Judge, Quiet, Responder, Sandbox, app
from drpo_agents.errors import ConfigError, DRPOError
from drpo_agents.evaluation import GateThresholds
from drpo_agents.infra.calls import run_sync
from drpo_agents.realign import PROMOTION_GATE, RoundRecord, arealign
from drpo_agents.realign.deployment import Deployment


@app.command("realign")
def realign_command(
    deploy_dir: Annotated[
        Path, typer.Argument(help="The deployment folder (current.json, versions, history).")
    ],
    queries: Annotated[Path, typer.Option(help="New queries: a file, or a folder of files that grows.")],
    sandbox: Sandbox = False,
    responder: Responder = None,
    judge: Judge = None,
    rewriter: RewriterOption = None,
    evaluation_judge: Annotated[
        str | None, typer.Option(help="The gate's judge, PROVIDER:MODEL (default: --judge).")
    ] = None,
    base_url: BaseUrl = None,
    initial: Annotated[
        Path | None,
        typer.Option(help="Deployed first when the folder has nothing deployed (default: the plain prompt)."),
    ] = None,
    config: ConfigOption = None,
    depth: DepthOption = None,
    beam_size: BeamSizeOption = None,
    n_actions: NActionsOption = None,
    seed: SeedOption = None,
    max_concurrency: MaxConcurrencyOption = None,
    fail_under: FailUnderOption = None,
    min_win_rate: MinWinRateOption = None,
    max_regression: Annotated[
        float,
        typer.Option(
            min=0, max=4, help="Promote only if the gain over the deployed prompt is surely above -this."
        ),
    ] = PROMOTION_GATE.max_regression or 0.0,
    held_out: Annotated[
        float, typer.Option(min=0.05, max=0.9, help="Share of the new queries held out for the gate.")
    ] = 0.3,
    min_new_queries: Annotated[int, typer.Option(min=2, help="Fewer new queries than this: no round.")] = 4,
    shared_memory: Annotated[
        bool,
        typer.Option(
            "--shared-memory", help="Rounds recall earlier rounds' critiques (did not pay: docs/REALIGN.md)."
        ),
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Realign: optimize on new queries from the deployed artifact, gate against it, promote or keep.

    Run it on a schedule (cron, or LangGraph Server crons on the realign graph). A round killed
    at any moment is resumed by running the command again; current.json always points at a
    whole version.
    """
    fields = {"depth": depth, "beam_size": beam_size, "n_actions": n_actions, "seed": seed}
    cfg = load_config(config, {**fields, "max_concurrency": max_concurrency})
    models = build_models(model_specs(sandbox, responder, judge, rewriter), base_url)
    gate = GateThresholds(fail_under=fail_under, min_win_rate=min_win_rate, max_regression=max_regression)
    try:
        record = run_sync(
            arealign(
                deploy_dir,
                queries,
                responder=models.responder,
                judge=models.judge,
                rewriter=models.rewriter,
                evaluation_judge=build_model(evaluation_judge, "judge", base_url)
                if evaluation_judge
                else None,
                config=cfg,
                gate=gate,
                held_out_fraction=held_out,
                min_new_queries=min_new_queries,
                initial=initial,
                shared_memory=shared_memory,
            )
        )
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    except DRPOError as exc:
        raise fail(f"{exc}. Run the same command again to resume the round", EXIT_FAILED) from exc
    _show(record, Deployment(deploy_dir), quiet, as_json)


def _show(record: RoundRecord, deployment: Deployment, quiet: bool, as_json: bool) -> None:
    if as_json:
        print_json(record.model_dump(mode="json"))
    else:
        sys.stdout.write(f"{deployment.pointer if quiet else round_summary(record, deployment)}\n")


def round_summary(record: RoundRecord, deployment: Deployment) -> str:
    """What a round did, in one line."""
    if record.decision == "skipped":
        return f"no round: {record.reason}; deployed: {record.deployed_after}"
    scores = ""
    if record.candidate_mean is not None and record.deployed_mean is not None:
        scores = f" (candidate {record.candidate_mean:.2f} vs deployed {record.deployed_mean:.2f}"
        if record.gain and None not in record.gain:
            mean, low, high = record.gain
            scores += f", gain {mean:+.2f} [{low:+.2f}, {high:+.2f}]"
        scores += ")"
    if record.decision == "promoted":
        return f"round {record.round}: promoted {record.deployed_after}{scores}; {deployment.pointer} points at it"
    return f"round {record.round}: kept {record.deployed_after}{scores}: {record.reason}"
