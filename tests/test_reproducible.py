"""Same seed, same result: a run's outcome depends on neither its run id, its folder nor the
clock, and a run sharing a memory with runs going on beside it ends as it would alone."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig

from drpo_agents import AlignmentArtifact, DRPOConfig, aoptimize, create_drpo_graph, optimize
from drpo_agents.datasets import load_training_queries
from drpo_agents.errors import ConfigError
from drpo_agents.evaluation import evaluate
from drpo_agents.evaluation.gate import GateThresholds
from drpo_agents.memory import Critique, InMemoryCritiqueMemory, RunLedger
from drpo_agents.memory.base import check_critique_memory

# Memory, the ICL stage and the acceptance gate all on; enough levels that recall meets ties.
CONFIG = DRPOConfig(
    depth=8,
    beam_size=2,
    n_actions=3,
    queries_per_step=4,
    icl_iters=1,
    validation_size=4,
    acceptance_gate=True,
    seed=5,
)
QUERIES = load_training_queries()[:60]
MODELS = {"responder": "sandbox", "judge": "sandbox"}


def content(artifact: AlignmentArtifact) -> Any:
    """The artifact as JSON with its run id written "RUN" (lessons name the run they came from)
    and without its creation time."""
    text = json.dumps(artifact.model_dump(mode="json", exclude={"created_at"}))
    return json.loads(text.replace(artifact.run_id, "RUN"))


def first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next(
            (
                d
                for i, (x, y) in enumerate(zip(a, b, strict=True))
                if (d := first_difference(x, y, f"{path}[{i}]"))
            ),
            None,
        )
    return None if a == b else f"{path}: {str(a)[:120]!r} != {str(b)[:120]!r}"


def critique(run_id: str, n: int, *, score: int, level: int, candidate: str, model: str = "m") -> Critique:
    # Equal texts in different runs: recall meets exact ties and must break them by content.
    return Critique(
        query=f"How do I fix problem {n}?",
        aspect="Helpfulness",
        score=score,
        rationale=f"Misses step {n}.",
        run_id=run_id,
        responder_model=model,
        candidate_id=candidate,
        level=level,
        query_id=f"q{n}",
    )


def test_recall_breaks_ties_by_content_whatever_the_run_ids() -> None:
    recalled = set()
    for trial in range(12):
        names = [f"{random.Random(trial).getrandbits(64):x}-{side}" for side in "ab"]
        memory = InMemoryCritiqueMemory()
        memory.remember(
            [critique(names[0], n, score=2, level=1, candidate="c1") for n in range(6)]
            + [critique(names[1], n, score=3, level=2, candidate="c7") for n in range(6)]
        )
        found = memory.recall("How do I fix problem 3? Misses step 3.", k=6, responder_model="m")
        recalled.add(tuple((c.query_id, c.score, c.level, c.candidate_id) for c in found))
    assert len(recalled) == 1, recalled


@pytest.mark.slow
def test_same_seed_in_other_folders_with_other_run_ids_gives_the_same_artifact_and_evaluation(
    tmp_path: Path,
) -> None:
    first = optimize(QUERIES, **MODELS, config=CONFIG, run_dir=tmp_path / "a", run_id="20260101-000000")
    second = optimize(
        QUERIES, **MODELS, config=CONFIG, run_dir=tmp_path / "elsewhere" / "b", run_id="20261206-235959"
    )
    assert any(c.lessons for c in first.candidates), "the run recalled no lesson: a weak check"
    assert first.gate_decisions, "the acceptance gate decided nothing"
    assert first.icl_optimization, "the ICL stage did not run"
    assert first_difference(content(first), content(second)) is None

    held_out = load_training_queries()[60:72]
    reports = [
        evaluate(held_out, **MODELS, artifact=artifact, gate=GateThresholds(fail_under=1.0)).model_dump(
            mode="json", exclude={"created_at"}
        )
        for artifact in (first, second)
    ]
    text = [json.dumps(r).replace(a.run_id, "RUN") for r, a in zip(reports, (first, second), strict=True)]
    assert first_difference(json.loads(text[0]), json.loads(text[1])) is None


def _small(seed: int) -> DRPOConfig:
    return DRPOConfig(depth=3, beam_size=2, n_actions=2, queries_per_step=3, seed=seed)


@pytest.mark.slow
def test_a_run_recalls_only_the_runs_finished_when_it_began() -> None:
    shared = InMemoryCritiqueMemory()
    finished = optimize(QUERIES[:20], **MODELS, config=_small(1), run_id="finished-run", memory=shared)
    assert shared.finished_runs() == {"finished-run"}
    only_finished = InMemoryCritiqueMemory()
    optimize(QUERIES[:20], **MODELS, config=_small(1), run_id="finished-run", memory=only_finished)
    # A run still going on: its critiques are in the memory, it has not finished.
    model = finished.models["responder"]
    unfinished = [
        critique("still-running", n, score=1, level=1, candidate="c1", model=model) for n in range(20)
    ]
    shared.remember(unfinished)

    beside = optimize(QUERIES[20:40], **MODELS, config=_small(2), run_id="new", memory=shared)
    alone = optimize(QUERIES[20:40], **MODELS, config=_small(2), run_id="new", memory=only_finished)
    runs = {run for c in beside.candidates for run in c.lesson_runs}
    assert "finished-run" in runs and "still-running" not in runs, runs
    assert first_difference(content(beside), content(alone)) is None
    assert shared.finished_runs() == {"finished-run", "new"}


@pytest.mark.slow
def test_runs_sharing_one_memory_at_once_end_as_each_would_alone() -> None:
    jobs = [(QUERIES[10 * i : 10 * i + 20], _small(i), f"run-{i}") for i in range(4)]

    async def together(memory: InMemoryCritiqueMemory) -> list[AlignmentArtifact]:
        return list(
            await asyncio.gather(
                *(aoptimize(q, **MODELS, config=c, run_id=r, memory=memory) for q, c, r in jobs)
            )
        )

    shared = InMemoryCritiqueMemory()
    concurrent = asyncio.run(together(shared))
    alone = [optimize(q, **MODELS, config=c, run_id=r, memory=InMemoryCritiqueMemory()) for q, c, r in jobs]
    for got, expected in zip(concurrent, alone, strict=True):
        assert first_difference(content(got), content(expected)) is None, got.run_id
    assert shared.finished_runs() == {r for _, _, r in jobs}
    # Each run's critiques are all in the shared memory: the union of the four.
    assert len(shared) == sum(len(m) for m in _memories_of(jobs))


def _memories_of(jobs: list[tuple[list[Any], DRPOConfig, str]]) -> list[InMemoryCritiqueMemory]:
    memories = []
    for q, c, r in jobs:
        memory = InMemoryCritiqueMemory()
        optimize(q, **MODELS, config=c, run_id=r, memory=memory)
        memories.append(memory)
    return memories


def test_legacy_chroma_memory_names_its_runs_finished(tmp_path: Path) -> None:
    import chromadb

    from drpo_agents.memory import ChromaCritiqueMemory

    client = chromadb.PersistentClient(path=str(tmp_path / "memory"))
    memory = ChromaCritiqueMemory(client=client)
    memory.remember([critique("old-a", 1, score=2, level=1, candidate="c1")])
    memory.remember([critique("old-b", 2, score=2, level=1, candidate="c1")])
    # As a memory written before the ledger existed: no collection of finished runs yet.
    assert f"{memory.prefix}-runs" not in {c.name for c in client.list_collections()}
    reopened = ChromaCritiqueMemory(client=chromadb.PersistentClient(path=str(tmp_path / "memory")))
    assert reopened.finished_runs() == {"old-a", "old-b"}
    reopened.finish_run("new")
    assert ChromaCritiqueMemory(client=client).finished_runs() == {"old-a", "old-b", "new"}


def test_a_ledger_whose_recall_cannot_filter_runs_is_refused() -> None:
    class Ledger(InMemoryCritiqueMemory):
        def recall(  # type: ignore[override]
            self,
            text: str,
            *,
            k: int,
            responder_model: str | None = None,
            run_id: str | None = None,
            max_score: int = 3,
            horizon: tuple[str, int] | None = None,
        ) -> list[Critique]:
            return []

    assert isinstance(Ledger(), RunLedger)
    with pytest.raises(ConfigError, match="runs"):
        check_critique_memory(Ledger())


def test_a_server_user_recalls_only_their_own_finished_runs() -> None:
    shared = InMemoryCritiqueMemory()
    graph = create_drpo_graph("sandbox", "sandbox", config=_small(1), memory=shared).compile()

    def run(run_id: str, user: str, queries: list[Any]) -> dict[str, Any]:
        config: RunnableConfig = {"configurable": {"langgraph_auth_user_id": user}}
        artifact: dict[str, Any] = graph.invoke({"queries": queries, "run_id": run_id}, config)["artifact"]
        return artifact

    run("alice-1", "alice", QUERIES[:20])
    bob = run("bob-1", "bob", QUERIES[:20])
    assert bob["memory_runs"] == [] and {r for c in bob["candidates"] for r in c["lesson_runs"]} <= {"bob-1"}
    alice = run("alice-2", "alice", QUERIES[20:40])
    assert alice["memory_runs"] == ["alice-1"]
    assert {r for c in alice["candidates"] for r in c["lesson_runs"]} <= {"alice-1", "alice-2"}
    assert shared.finished_runs("alice") == {"alice-1", "alice-2"} and shared.finished_runs("bob") == {
        "bob-1"
    }
    assert shared.finished_runs() == frozenset()  # runs started outside a server see none of them
