"""Measuring what critique memory buys: levels needed to reach a target held-out reward."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from drpo_agents import AlignmentArtifact, DRPOConfig, load_eval_queries, load_training_queries, optimize
from drpo_agents.agents import Judge, Responder
from drpo_agents.models.sandbox import sandbox_models
from drpo_agents.retrieval import InMemoryICLRetriever


@cache
def _held_out_set() -> list[tuple[str, list[str]]]:
    judge = Judge(sandbox_models()["judge"])
    return [(q["query"], judge.select_aspects(q["query"]).selected_aspects) for q in load_eval_queries()]


@cache
def held_out_reward(prompt: str) -> float:
    """Mean sandbox reward of ``prompt`` over the packaged held-out queries."""
    models = sandbox_models()
    responder = Responder(models["responder"], retriever=InMemoryICLRetriever([]), k=0)
    judge = Judge(models["judge"])
    rewards = [
        judge.score(q, responder.respond(prompt, q).answer, aspects).reward for q, aspects in _held_out_set()
    ]
    return sum(rewards) / len(rewards)


def held_out_curve(artifact: AlignmentArtifact) -> list[float]:
    """Held-out reward of the best beam prompt after each level."""
    return [held_out_reward(artifact.candidate(level.beam[0]).prompt) for level in artifact.levels]


def levels_to_reach(curve: list[float], target: float) -> int | None:
    """First level whose held-out reward reaches ``target`` (None if none does)."""
    return next((level for level, value in enumerate(curve) if value >= target - 1e-9), None)


def run(
    seed: int, memory: Path | None, *, use_memory: bool = True, depth: int = 8, per_step: int = 3
) -> AlignmentArtifact:
    """A sandbox run whose critiques go to (and come from) the store at ``memory``."""
    config = DRPOConfig(
        depth=depth,
        max_depth_increase=0,
        queries_per_step=per_step,
        seed=seed,
        critique_memory=use_memory,
        icl_k=0,
    )
    return optimize(
        load_training_queries(),
        responder="sandbox",
        judge="sandbox",
        config=config,
        memory=memory,
        run_id=f"s{seed}",
    )


def compare(first_seed: int, second_seed: int, workdir: Path, *, with_off: bool = True) -> dict[str, object]:
    """Run 1 fills a store; run 2 starts from it, from an empty store, or with memory off.

    Returns run 1's final held-out reward and the levels each variant of run 2 needs to reach it.
    """
    shared = workdir / f"shared-{first_seed}"
    target = held_out_curve(run(first_seed, shared))[-1]
    row: dict[str, object] = {
        "target": round(target, 3),
        "seeded": levels_to_reach(held_out_curve(run(second_seed, shared)), target),
        "fresh": levels_to_reach(held_out_curve(run(second_seed, workdir / f"fresh-{second_seed}")), target),
    }
    if with_off:
        row["off"] = levels_to_reach(held_out_curve(run(second_seed, None, use_memory=False)), target)
    return row


if __name__ == "__main__":
    import tempfile

    print("| run 1 seed | run 2 seed | target | seeded | fresh store | memory off |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(10, 26, 2):
            row = compare(seed, seed + 1, Path(tmp))
            print(
                f"| {seed} | {seed + 1} | {row['target']} | {row['seeded']} | {row['fresh']} | {row['off']} |",
                flush=True,
            )
