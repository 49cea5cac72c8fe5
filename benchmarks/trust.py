"""Does the reward deserve trust? Gated vs ungated search under a noisy, length-biased judge.

Every run searches with a sandbox judge that jitters scores (``noise``) and pays for length
(``length_bias``). The returned prompt is then scored on the 40 packaged held-out queries by
the *exact* sandbox judge (the ground truth of the simulation), so an optimizer fooled by the
noise or the verbosity bias shows up as a lower held-out score.

Run: ``python -m benchmarks.trust`` (``--seeds 0 1 2 3 4``, ``--depth 8``). Prints one table
row per seed and variant, and a summary. Variants:

- ``ungated``: the reference behaviour (the search's best prompt is returned);
- ``gated``: the acceptance gate with red-team safety constraint (validation held out);
- ``gated+len``: the gate plus the length-normalised reward;
- ``gated+len+jury3``: the same with a jury of three noisy judges (independent seeds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from drpo_agents import (
    AlignmentArtifact,
    DRPOConfig,
    Judge,
    Responder,
    load_eval_queries,
    load_training_queries,
)
from drpo_agents.api import optimize
from drpo_agents.datasets import query_categories
from drpo_agents.models.sandbox import SandboxJudge, SandboxResponder, SandboxRewriter
from drpo_agents.retrieval import InMemoryICLRetriever

NOISE = 0.3
LENGTH_BIAS = 1.0
VARIANTS = ("ungated", "gated", "gated+len", "gated+len+jury3")


@cache
def _held_out() -> list[tuple[str, list[str], bool]]:
    judge = Judge(SandboxJudge(seed=0))
    categories = query_categories()
    return [
        (q["query"], judge.select_aspects(q["query"]).selected_aspects, categories.get(q["id"]) == "red_team")
        for q in load_eval_queries()
    ]


@cache
def held_out(prompt: str) -> tuple[float, float | None, float]:
    """Exact-judge mean reward, mean Safety on the red-team queries, and mean answer words."""
    responder = Responder(SandboxResponder(seed=0), retriever=InMemoryICLRetriever([]), k=0)
    judge = Judge(SandboxJudge(seed=0))
    rewards, safety, words = [], [], []
    for query, aspects, red_team in _held_out():
        answer = responder.respond(prompt, query).answer
        evaluation = judge.score(query, answer, aspects)
        rewards.append(evaluation.reward)
        words.append(len(answer.split()))
        if red_team and (score := evaluation.score_of("Safety")) is not None:
            safety.append(float(score))
    return (
        statistics.fmean(rewards),
        statistics.fmean(safety) if safety else None,
        statistics.fmean(words),
    )


@dataclass
class Outcome:
    seed: int
    variant: str
    held_out: float
    held_out_safety: float | None
    answer_words: float
    raw_length_corr: float | None
    adjusted_length_corr: float | None
    accepted: int
    challenged: int
    calls: int
    seconds: float


def run_variant(
    seed: int,
    variant: str,
    depth: int,
    validation_size: int = 16,
    red_team: int = 4,
    confidence: float = 0.95,
    queries_per_step: int = 1,
) -> Outcome:
    gated = variant.startswith("gated")
    config = DRPOConfig(
        beam_size=2,
        n_actions=3,
        depth=depth,
        queries_per_step=queries_per_step,
        seed=seed,
        validation_size=validation_size,
        red_team_validation_size=red_team if gated else 0,
        gate_confidence=confidence,
        acceptance_gate=gated,
        length_normalization="+len" in variant,
        critique_memory=False,
    )
    jury: list[Any] = []
    if "jury3" in variant:
        jury = [SandboxJudge(seed=seed + 100 * i, noise=NOISE, length_bias=LENGTH_BIAS) for i in (1, 2)]
    if not gated:
        # The reference: no validation at all, the search's own best is returned.
        config = config.model_copy(update={"validation_size": 0})
    started = time.perf_counter()
    artifact: AlignmentArtifact = optimize(
        load_training_queries(),
        responder=SandboxResponder(seed=seed),
        judge=SandboxJudge(seed=seed, noise=NOISE, length_bias=LENGTH_BIAS),
        rewriter=SandboxRewriter(seed=seed),
        config=config,
        jury=jury,
    )
    seconds = time.perf_counter() - started
    score, safety, words = held_out(artifact.system_prompt)
    challenged = [d for d in artifact.gate_decisions if d.challenger_id]
    return Outcome(
        seed=seed,
        variant=variant,
        held_out=score,
        held_out_safety=safety,
        answer_words=words,
        raw_length_corr=artifact.within_query_length_correlation(),
        adjusted_length_corr=artifact.within_query_length_correlation(adjusted=True),
        accepted=sum(d.accepted for d in challenged),
        challenged=len(challenged),
        calls=sum(u.calls for u in artifact.usage.values()),
        seconds=seconds,
    )


def run(
    seeds: list[int], depth: int = 8, variants: tuple[str, ...] = VARIANTS, **options: Any
) -> list[Outcome]:
    """Every variant for every seed (``options`` go to :func:`run_variant`)."""
    return [run_variant(seed, variant, depth, **options) for seed in seeds for variant in variants]


def summarize(outcomes: list[Outcome]) -> dict[str, dict[str, float | None]]:
    """Per variant: mean and std of the held-out score, and mean length correlations."""

    def mean_of(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    summary: dict[str, dict[str, float | None]] = {}
    for variant in dict.fromkeys(o.variant for o in outcomes):
        rows = [o for o in outcomes if o.variant == variant]
        scores = [o.held_out for o in rows]
        summary[variant] = {
            "held_out_mean": statistics.fmean(scores),
            "held_out_std": statistics.pstdev(scores),
            "held_out_min": min(scores),
            "held_out_safety": mean_of([o.held_out_safety for o in rows]),
            "answer_words": statistics.fmean(o.answer_words for o in rows),
            "raw_length_corr": mean_of([o.raw_length_corr for o in rows]),
            "adjusted_length_corr": mean_of([o.adjusted_length_corr for o in rows]),
        }
    return summary


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--validation-size", type=int, default=16)
    parser.add_argument("--red-team", type=int, default=4)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--queries-per-step", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args(argv)
    baseline = held_out(DRPOConfig().initial_prompt)
    print(f"noisy judge: noise={NOISE}, length_bias={LENGTH_BIAS}; initial prompt held-out {baseline[0]:.3f}")
    print(
        "| seed | variant | held-out | red-team safety | words | length corr raw / adjusted | accepted | calls | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    outcomes = run(
        args.seeds,
        args.depth,
        tuple(args.variants),
        validation_size=args.validation_size,
        red_team=args.red_team,
        confidence=args.confidence,
        queries_per_step=args.queries_per_step,
    )
    for o in outcomes:
        print(
            f"| {o.seed} | {o.variant} | {o.held_out:.3f} | {_fmt(o.held_out_safety, '.2f')} | "
            f"{o.answer_words:.0f} | {_fmt(o.raw_length_corr, '+.2f')} / {_fmt(o.adjusted_length_corr, '+.2f')} | "
            f"{o.accepted}/{o.challenged} | {o.calls} | {o.seconds:.1f} |"
        )
    print()
    print(
        "| variant | held-out mean | std across seeds | min | red-team safety | words | length corr raw / adjusted |"
    )
    print("|---|---|---|---|---|---|---|")
    for variant, s in summarize(outcomes).items():
        print(
            f"| {variant} | {_fmt(s['held_out_mean'])} | {_fmt(s['held_out_std'])} | {_fmt(s['held_out_min'])} | "
            f"{_fmt(s['held_out_safety'], '.2f')} | {_fmt(s['answer_words'], '.0f')} | "
            f"{_fmt(s['raw_length_corr'], '+.2f')} / {_fmt(s['adjusted_length_corr'], '+.2f')} |"
        )


if __name__ == "__main__":
    main()
