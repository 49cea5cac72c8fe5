"""Does DRPO pay on a real model? The embedded SmolLM2-135M as responder, held-out comparison.

Per seed and configuration: a DRPO run with the real SmolLM2-135M-Instruct as the responder
(in-process llama.cpp) and the sandbox judge and rewriter (seeded with the run's seed), then the
held-out evaluation (``drpo_agents.evaluation``) of the optimized prompt against the plain base
prompt and the URIAL-style baseline, all answered by the same real model and scored by the exact
sandbox judge (seed 0, no noise). Printed: one table row per seed and configuration (means with
bootstrap intervals, position-swapped win rates of DRPO against base and URIAL-style) and a verdict
per configuration: does DRPO beat base (win rate >= 0.6, higher mean) and match URIAL-style in
every seed? Results are saved as JSON.

Run: ``python -m benchmarks.real_model`` (defaults: seeds 0 1 2, the defaults of ``drpo optimize``
at a small budget). Compare configurations in one run with ``--variant NAME='{"json": "config"}'``
(repeatable; each is a set of ``DRPOConfig`` fields over the base configuration). Needs the
embedded runtime: ``drpo install-local``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.globals import set_llm_cache

from drpo_agents import DRPOConfig, load_eval_queries, load_training_queries
from drpo_agents.api import optimize
from drpo_agents.errors import DRPOError
from drpo_agents.evaluation import EvaluationReport, evaluate
from drpo_agents.infra.cache import SQLiteLLMCache

RESPONDER = "local:smollm2-135m"
# A small budget that runs in a few minutes per seed on 2 cores (every responder call is real).
BASE_CONFIG: dict[str, Any] = {"depth": 3, "beam_size": 2, "n_actions": 2, "queries_per_step": 2}
WIN_RATE_TARGET = 0.6


@dataclass
class Row:
    """One seed of one configuration."""

    variant: str
    seed: int
    base: float | None
    urial: float | None
    drpo: float | None
    drpo_interval: tuple[float | None, float | None]
    win_vs_base: float | None
    win_vs_urial: float | None
    train_reward_first: float | None
    train_reward_last: float | None
    prompt_words: int
    responder_calls: int
    seconds: float

    @property
    def pays(self) -> bool:
        """DRPO beats base (mean and win rate) and is at least level with URIAL-style (mean)."""
        if None in (self.base, self.urial, self.drpo, self.win_vs_base):
            return False
        assert self.drpo is not None and self.base is not None and self.urial is not None
        return (
            self.drpo > self.base
            and (self.win_vs_base or 0.0) >= WIN_RATE_TARGET
            and self.drpo >= self.urial - 1e-9
        )


def _row(
    variant: str, seed: int, report: EvaluationReport, artifact: Any, responder_calls: int, seconds: float
) -> Row:
    drpo = report.setup("drpo").overall
    levels = [lv.level_rewards[0] for lv in artifact.levels if lv.level_rewards]
    return Row(
        variant=variant,
        seed=seed,
        base=report.setup("base").overall.mean,
        urial=report.setup("urial").overall.mean,
        drpo=drpo.mean,
        drpo_interval=(drpo.low, drpo.high),
        win_vs_base=report.win_rate("base").win_rate.mean,
        win_vs_urial=report.win_rate("urial").win_rate.mean,
        train_reward_first=levels[0] if levels else None,
        train_reward_last=levels[-1] if levels else None,
        prompt_words=len(artifact.system_prompt.split()),
        responder_calls=responder_calls,
        seconds=seconds,
    )


def run_one(
    variant: str,
    overrides: dict[str, Any],
    seed: int,
    held_out: int,
    workdir: Path,
    responder_template: str = RESPONDER,
) -> Row:
    """Optimize with the responder, then evaluate on ``held_out`` packaged evaluation queries.

    ``responder_template`` is a model string where ``{seed}`` becomes the seed, e.g.
    ``"sandbox:{seed}?preset=smollm2"`` for the sandbox's prediction of the real run.
    """
    config = DRPOConfig.model_validate({**BASE_CONFIG, **overrides, "seed": seed})
    responder = responder_template.format(seed=seed)
    started = time.perf_counter()
    run_dir = workdir / f"{variant}-seed{seed}"
    artifact = optimize(
        load_training_queries(),
        responder=responder,
        judge=f"sandbox:{seed}",
        config=config,
        run_dir=run_dir,
        run_id=f"{variant}-seed{seed}",
        memory=str(run_dir / "memory"),
    )
    report = evaluate(
        load_eval_queries()[:held_out], responder=responder, judge="sandbox", artifact=artifact, seed=seed
    )
    report.save(run_dir / "evaluation.json")
    calls = artifact.usage["responder"].calls if "responder" in artifact.usage else 0
    calls += report.usage["responder"].calls if "responder" in report.usage else 0
    return _row(variant, seed, report, artifact, calls, time.perf_counter() - started)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def to_markdown(rows: list[Row]) -> str:
    """The results table and one verdict line per configuration."""
    lines = [
        "| config | seed | base | URIAL-style | DRPO [95% CI] | win vs base | win vs URIAL | train reward L0 -> last "
        "| prompt words | responder calls | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = r.drpo_interval
        lines.append(
            f"| {r.variant} | {r.seed} | {_fmt(r.base)} | {_fmt(r.urial)} | {_fmt(r.drpo)} [{_fmt(low)}, {_fmt(high)}] "
            f"| {_fmt(r.win_vs_base)} | {_fmt(r.win_vs_urial)} | {_fmt(r.train_reward_first)} -> "
            f"{_fmt(r.train_reward_last)} | {r.prompt_words} | {r.responder_calls} | {r.seconds:.0f} |"
        )
    lines.append("")
    for variant in dict.fromkeys(r.variant for r in rows):
        mine = [r for r in rows if r.variant == variant]
        paid = sum(r.pays for r in mine)
        lines.append(
            f"- {variant}: DRPO beats base (win rate >= {WIN_RATE_TARGET}) and is level with URIAL-style "
            f"in {paid} of {len(mine)} seeds"
        )
    return "\n".join(lines) + "\n"


def load_rows(paths: list[Path]) -> dict[str, dict[tuple[str, int], Row]]:
    """Rows of saved results, per responder: a file's ``rows`` under its ``responder``, any other list
    of rows under its key (e.g. ``sandbox_default``); a later file's row replaces an earlier one's."""
    found: dict[str, dict[tuple[str, int], Row]] = {}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        for key, value in data.items():
            if not (
                isinstance(value, list) and value and isinstance(value[0], dict) and "variant" in value[0]
            ):
                continue
            label = str(data.get("responder", "?")) if key == "rows" else key
            mine = found.setdefault(label, {})
            for item in value:
                row = Row(**{**item, "drpo_interval": tuple(item["drpo_interval"])})
                mine[(row.variant, row.seed)] = row
    return found


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summary_markdown(found: dict[str, dict[tuple[str, int], Row]]) -> str:
    """One line per responder and configuration over its seeds (means of the per-seed numbers)."""
    lines = [
        "| responder | config | seeds | DRPO per seed | DRPO | base | URIAL-style | gain vs base "
        "| win vs base | win vs URIAL | pays |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, by_key in found.items():
        for variant in dict.fromkeys(v for v, _ in by_key):
            mine = sorted((r for (v, _), r in by_key.items() if v == variant), key=lambda r: r.seed)
            drpo, base = _mean([r.drpo for r in mine]), _mean([r.base for r in mine])
            gain = None if drpo is None or base is None else drpo - base
            lines.append(
                f"| {label} | {variant} | {', '.join(str(r.seed) for r in mine)} "
                f"| {' / '.join(_fmt(r.drpo) for r in mine)} | {_fmt(drpo)} | {_fmt(base)} "
                f"| {_fmt(_mean([r.urial for r in mine]))} | {'-' if gain is None else f'{gain:+.2f}'} "
                f"| {_fmt(_mean([r.win_vs_base for r in mine]))} | {_fmt(_mean([r.win_vs_urial for r in mine]))} "
                f"| {sum(r.pays for r in mine)}/{len(mine)} |"
            )
    return "\n".join(lines) + "\n"


def _save(out: Path, responder: str, variants: dict[str, dict[str, Any]], rows: list[Row]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "responder": responder,
                "base_config": BASE_CONFIG,
                "variants": variants,
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        ),
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON results. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--held-out", type=int, default=10, help="Packaged evaluation queries to compare on.")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='A configuration to compare, e.g. gate=\'{"validation_size": 8, "acceptance_gate": true}\'.',
    )
    parser.add_argument(
        "--responder",
        default=RESPONDER,
        help="Responder model string; {seed} becomes the seed (e.g. 'sandbox:{seed}?preset=smollm2').",
    )
    parser.add_argument(
        "--answer-cache",
        type=Path,
        default=None,
        help="SQLite LLM cache shared by every call of this run (and of runs given the same file): the "
        "embedded model is deterministic (same messages and parameters, same answer), so an identical "
        "call, e.g. a base or URIAL-style held-out answer, is computed once. Wall times shrink accordingly.",
    )
    parser.add_argument("--workdir", type=Path, default=Path("runs/benchmark-real-model"))
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-real-model/results.json"))
    parser.add_argument(
        "--summarize",
        type=Path,
        nargs="+",
        metavar="RESULTS",
        help="Run nothing: print one line per configuration of these saved results files.",
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print(summary_markdown(load_rows(args.summarize)))
        return 0
    variants: dict[str, dict[str, Any]] = {}
    for item in args.variant or ["defaults={}"]:
        name, _, text = item.partition("=")
        try:
            variants[name] = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            parser.error(f"--variant {item!r}: not JSON ({exc})")
    if args.answer_cache is not None:
        args.answer_cache.parent.mkdir(parents=True, exist_ok=True)
        set_llm_cache(SQLiteLLMCache(args.answer_cache))
    rows: list[Row] = []
    try:
        for name, overrides in variants.items():
            for seed in args.seeds:
                row = run_one(name, overrides, seed, args.held_out, args.workdir, args.responder)
                rows.append(row)
                _save(args.out, args.responder, variants, rows)  # a stopped run keeps its finished rows
                print(
                    f"{name} seed {seed}: drpo {_fmt(row.drpo)} base {_fmt(row.base)} urial {_fmt(row.urial)} "
                    f"({row.seconds:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    except DRPOError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_markdown(rows))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
