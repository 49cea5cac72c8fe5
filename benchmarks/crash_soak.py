"""Crash soak: hundreds of SIGKILLs across sandbox runs; does every resumed run equal the uninterrupted one?

Each configuration of :data:`tests.crash_zygote.CONFIGS` runs once uninterrupted, then again and
again, each run killed 1-3 times and resumed to its end. Most kills land on an instrumented
moment drawn uniformly over the run (model calls, checkpoint and Chroma writes, review, finalize,
file renames, trace lines); ``--timed`` of them are SIGKILLs sent from outside after a random
delay, landing wherever the process happens to be. A resumed run counts as *equal* when its
artifact (``created_at`` aside) and its Chroma record sets equal the reference's; *ok* also needs a
current report, a readable trace and no repeated call (see :mod:`tests.crash_attempts`).

Run: ``python -m benchmarks.crash_soak --moments 300 --seed 0`` (``--configs search gate``,
``--timed 0.25``, ``--keep DIR`` to keep the run folders). Prints one row per configuration and,
for failed runs, the moment kinds they were killed at.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.crash_attempts import (
    Place,
    Verdict,
    Zygote,
    check_instrumented,
    judge,
    plan_kills,
    run_attempt,
)
from tests.crash_zygote import CONFIGS


@dataclass
class Tally:
    """One configuration's figures."""

    reference_moments: int = 0
    runs: int = 0
    kills: int = 0
    timed_kills: int = 0
    equal: int = 0
    artifact_differs: int = 0
    memory_differs: int = 0
    ok: int = 0
    repeated: int = 0
    redone: int = 0
    failed_at: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, verdict: Verdict, timed: bool) -> None:
        self.runs += 1
        self.kills += verdict.crashes
        self.timed_kills += verdict.crashes if timed else 0
        self.equal += verdict.equal
        self.artifact_differs += verdict.artifact_difference is not None
        self.memory_differs += verdict.memory_difference is not None
        self.ok += verdict.ok
        self.repeated += verdict.repeated
        self.redone += verdict.redone
        if not verdict.ok:
            problem = "differs" if not verdict.equal else "repeats calls" if verdict.repeated else "other"
            kinds = {s.killed_at().split(":")[0] for s in verdict.attempt.steps if s.killed}
            self.failed_at.update(f"{problem} @ {'timed' if k.startswith('time') else k}" for k in kinds)
            if len(self.examples) < 4 and (problem != "repeats calls" or len(self.examples) < 2):
                self.examples.append(verdict.describe())


def soak(moments: int, seed: int, configs: list[str], timed: float, root: Path) -> dict[str, Tally]:
    """Kill runs of ``configs`` until about ``moments`` kills were tried, split evenly between them."""
    rng = random.Random(seed)
    tallies = {name: Tally() for name in configs}
    zygote = Zygote()
    try:
        for name in configs:
            tally = tallies[name]
            reference = run_attempt(
                zygote, name, Place(root / name / "reference" / "run"), root / name / "r", []
            )
            if reference.error:
                raise SystemExit(f"{name}: the uninterrupted run failed: {reference.error}")
            check_instrumented(reference)
            tally.reference_moments = reference.moments
            seconds = sum(float(s.answer["seconds"]) for s in reference.steps)
            while tally.kills < moments // len(configs):
                crashes = rng.choice((1, 1, 2, 3))
                folder = root / name / f"attempt-{tally.runs}"
                is_timed = rng.random() < timed
                delays = [rng.uniform(0.0, seconds) for _ in range(crashes)] if is_timed else None
                kills = plan_kills(rng, reference.moments, crashes)
                attempt = run_attempt(zygote, name, Place(folder / "run"), folder / "logs", kills, delays)
                tally.add(judge(reference, attempt), is_timed)
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        zygote.close()
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moments", type=int, default=300, help="Kills to try, over all configurations.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", nargs="+", default=sorted(CONFIGS), choices=sorted(CONFIGS))
    parser.add_argument(
        "--timed", type=float, default=0.25, help="Share of runs killed after a random delay."
    )
    parser.add_argument("--keep", type=Path, default=None, help="Keep the run folders here.")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="drpo-crash-soak-"))
    started = time.perf_counter()
    try:
        tallies = soak(args.moments, args.seed, args.configs, args.timed, root)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    header = "| config | moments in run | runs | kills (timed) | resumed runs equal | artifact differs | memory differs | ok | repeated calls | in-flight redone |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name, t in tallies.items():
        print(
            f"| {name} | {t.reference_moments} | {t.runs} | {t.kills} ({t.timed_kills}) | "
            f"{t.equal}/{t.runs} | {t.artifact_differs} | {t.memory_differs} | {t.ok}/{t.runs} | "
            f"{t.repeated} | {t.redone} |"
        )

    def total(figure: str) -> int:
        return sum(int(getattr(t, figure)) for t in tallies.values())

    print(
        f"\nall: {total('kills')} kills in {total('runs')} runs; {total('equal')} resumed runs equal, "
        f"{total('ok')} ok; {total('repeated')} repeated calls, {total('redone')} in-flight calls redone "
        f"({time.perf_counter() - started:.0f} s, seed {args.seed})"
    )
    for name, t in tallies.items():
        if t.failed_at:
            print(
                f"\n{name}: failed runs were killed at: "
                + ", ".join(f"{k} x{n}" for k, n in t.failed_at.most_common())
            )
            for example in t.examples:
                print(f"  e.g. {example}")


if __name__ == "__main__":
    main()
