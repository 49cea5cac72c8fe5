"""Does critique memory pay across realignment rounds? An ablation with default settings.

For each seed, round 1 realigns from the plain prompt on 20 new queries, and round 2 on 20 other
queries, in four deployment folders that differ in memory only (round 1 is the same in all four):

- ``rules``: round 2 recalls round 1's critiques and the general lessons distilled from them
  (``shared_memory=True``, ``memory_rules=3``);
- ``shared``: round 2 recalls round 1's critiques (``shared_memory=True``);
- ``fresh``: each round keeps its own memory (the default of ``drpo realign``);
- ``off``: round 2 with ``critique_memory=False`` (nothing is recalled).

Measured on round 2: the held-out mean of its candidate (the gate's own evaluation, per query, so
the arms are paired query by query), the search's model calls in all, and the calls it took to
reach round 1's best training reward (responder answers and judge scorings of the levels up to the
first that reaches it, plus their rewrites and aspect selections; "-" when it never does).

Run: ``python -m benchmarks.memory_realign`` (``--seeds 0 1 2 ...``). Prints one row per seed and
arm, then the summary; ``--out FILE`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from drpo_agents import AlignmentArtifact, DRPOConfig, load_training_queries
from drpo_agents.artifact import load_artifact
from drpo_agents.evaluation import EvaluationReport
from drpo_agents.realign import RoundRecord, realign
from drpo_agents.rewards import bootstrap_ci

ARMS = ("rules", "shared", "fresh", "off")


def calls_to_reach(artifact: AlignmentArtifact, target: float) -> int | None:
    """Model calls the search made up to the first level whose best beam reward reaches ``target``."""
    level = next(
        (
            lv.level
            for lv in artifact.levels
            if lv.beam_mean_rewards and lv.beam_mean_rewards[0] >= target - 1e-9
        ),
        None,
    )
    return None if level is None else search_calls(artifact, level)


def search_calls(artifact: AlignmentArtifact, up_to: int | None = None) -> int:
    """Answers and scorings (two calls each), rewrites and aspect selections of levels <= ``up_to``."""
    last = up_to if up_to is not None else max((lv.level for lv in artifact.levels), default=0)
    evaluations = [e for e in artifact.evaluations if e.level <= last]
    rewrites = {(c.parent_id, c.level) for c in artifact.candidates if 1 <= c.level <= last and not c.carried}
    selections = {(e.level, e.query_id) for e in evaluations}
    return 2 * len(evaluations) + len(rewrites) + len(selections)


def _write(path: Path, queries: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    return path


def one_seed(seed: int, workdir: Path) -> list[dict[str, object]]:
    """Round 1, then round 2, in each arm's own deployment folder; one row per arm."""
    pool = load_training_queries()
    picked = random.Random(seed).sample(pool, 40)
    first, second = (
        _write(workdir / "round1.jsonl", picked[:20]),
        _write(workdir / "round2.jsonl", picked[20:]),
    )
    rows: list[dict[str, object]] = []
    rounds1: list[RoundRecord] = []
    for arm in ARMS:
        deploy = workdir / arm
        shared = arm in ("rules", "shared")
        round1 = realign(
            deploy,
            first,
            responder="sandbox",
            judge="sandbox",
            config=DRPOConfig(seed=seed),
            shared_memory=shared,
        )
        rounds1.append(round1)
        target = load_artifact(deploy / (round1.run_dir or "")).reward_curve()[-1]
        config = DRPOConfig(seed=seed, critique_memory=arm != "off", memory_rules=3 if arm == "rules" else 0)
        started = time.perf_counter()
        record: RoundRecord = realign(
            deploy, second, responder="sandbox", judge="sandbox", config=config, shared_memory=shared
        )
        run_dir = deploy / (record.run_dir or "")
        artifact = load_artifact(run_dir)
        report = EvaluationReport.load(run_dir / "evaluation.json")
        per_query = {
            r.query_id: a.mean for r in report.records if (a := r.answer_of("drpo")) and a.mean is not None
        }
        rows.append(
            {
                "seed": seed,
                "arm": arm,
                "held_out_mean": record.candidate_mean,
                "per_query": per_query,
                "decision": record.decision,
                "calls": search_calls(artifact),
                "calls_to_target": calls_to_reach(artifact, target),
                "target": round(target, 3),
                "lessons_from_round1": artifact.lesson_sources().get("r0001", 0),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    assert all(
        r.model_dump(exclude={"run_dir"}) == rounds1[0].model_dump(exclude={"run_dir"}) for r in rounds1
    ), "round 1 differs between arms with the same seed"
    return rows


def summary(rows: list[dict[str, object]]) -> list[str]:
    """Means per arm, and the paired held-out gains of the memory arms over the arms without."""
    lines = [
        "",
        "| arm | held-out mean | calls | calls to round 1's best (reached) | promoted |",
        "|---|---|---|---|---|",
    ]
    by_arm = {arm: [r for r in rows if r["arm"] == arm] for arm in ARMS}
    for arm, arm_rows in by_arm.items():
        means = [float(r["held_out_mean"]) for r in arm_rows if r["held_out_mean"] is not None]  # type: ignore[arg-type]
        reached = [int(r["calls_to_target"]) for r in arm_rows if r["calls_to_target"] is not None]  # type: ignore[call-overload]
        calls = sum(int(r["calls"]) for r in arm_rows) / len(arm_rows)  # type: ignore[call-overload]
        promoted = sum(1 for r in arm_rows if r["decision"] == "promoted")
        reach = (
            f"{sum(reached) / len(reached):.0f} ({len(reached)}/{len(arm_rows)})"
            if reached
            else f"- (0/{len(arm_rows)})"
        )
        lines.append(
            f"| {arm} | {sum(means) / len(means):.3f} | {calls:.0f} | {reach} | {promoted}/{len(arm_rows)} |"
        )
    for arm, other in (("rules", "shared"), ("rules", "fresh"), ("shared", "fresh"), ("shared", "off")):
        gains = []
        for row in by_arm[arm]:
            twin = next(r for r in by_arm[other] if r["seed"] == row["seed"])
            mine, theirs = row["per_query"], twin["per_query"]
            gains += [mine[q] - theirs[q] for q in mine if q in theirs]  # type: ignore[index, operator, attr-defined]
        low, high = bootstrap_ci(gains, seed=0)
        lines.append(
            f"\n{arm} - {other}: held-out gain {sum(gains) / len(gains):+.3f} [{low:+.3f}, {high:+.3f}] "
            f"(paired over {len(gains)} seed x query pairs)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    print("| seed | arm | held-out mean | calls | calls to target | lessons from round 1 | decision |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            for row in one_seed(seed, Path(folder)):
                rows.append(row)
                print(
                    f"| {row['seed']} | {row['arm']} | {row['held_out_mean']:.3f} | {row['calls']} | "
                    f"{row['calls_to_target'] if row['calls_to_target'] is not None else '-'} | "
                    f"{row['lessons_from_round1']} | {row['decision']} |",
                    flush=True,
                )
    print("\n".join(summary(rows)))
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
