"""Critique memory and ICL retrieval that a crash cannot bend: recall is a function of the set of
records, an interrupted write completes on rerun, and a lost Chroma server stops the run cleanly."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drpo_agents import AlignmentArtifact, load_training_queries
from drpo_agents.memory import (
    ChromaCritiqueMemory,
    ChromaICLRetriever,
    Critique,
    InMemoryCritiqueMemory,
    chroma_client,
)
from drpo_agents.retrieval import InMemoryICLRetriever
from drpo_agents.schemas import ICLExample
from drpo_agents.vectors import VectorTable

from .process_runs import wait_for_file
from .servers import _free_port, wait_until_serving
from .test_cli_errors import ENV, SMALL, one_error, resume_dir

QUERIES = [q["query"] for q in load_training_queries()[:12]]
ASPECTS = ["Safety", "Clarity", "Depth"]
PROBES = [*QUERIES[:4], "wifi network password", "feeling lonely", ""]


def records() -> list[Critique]:
    """60 critiques with repeated verdicts (same text: exact distance ties) across runs and levels."""
    return [
        Critique(
            query=QUERIES[i % len(QUERIES)],
            aspect=ASPECTS[i % 3],
            score=1 + i % 5,
            rationale=f"Misses point {i % 7}.",
            run_id=f"run{i % 2}",
            responder_model="m" if i % 4 else "other",
            candidate_id=f"c{i}",
            level=i % 4,
            query_id=f"q{i % len(QUERIES)}",
        )
        for i in range(60)
    ]


RECALLS: list[dict[str, Any]] = [
    {"k": 5},
    {"k": 8, "responder_model": "m"},
    {"k": 4, "run_id": "run1", "max_score": 5},
    {"k": 6, "responder_model": "m", "horizon": ("run0", 2)},
    {"k": 50},
]


def answers(memory: Any) -> list[list[str]]:
    return [[c.record_id for c in memory.recall(text, **kw)] for text in PROBES for kw in RECALLS]


def test_recall_depends_on_the_set_of_records_not_their_history(tmp_path: Path) -> None:
    batch = records()
    seen = []
    for seed in range(3):
        shuffled = random.Random(seed).sample(batch, len(batch))
        size = (7, 20, 60)[seed]
        chroma = ChromaCritiqueMemory(client=chroma_client(tmp_path / str(seed)))
        memory = InMemoryCritiqueMemory()
        for start in range(0, len(shuffled), size):
            chroma.remember(shuffled[start : start + size])
            memory.remember(shuffled[start : start + size])
        # The first record of a repeated verdict is the stored one: same content either way here.
        seen += [answers(chroma), answers(memory)]
        seen.append(answers(ChromaCritiqueMemory(client=chroma_client(tmp_path / str(seed)))))  # reopened
    assert all(found == seen[0] for found in seen)
    assert any(len(row) == 5 for row in seen[0])


def test_recall_filters_and_horizon() -> None:
    memory = InMemoryCritiqueMemory()
    memory.remember(records())
    found = memory.recall("point", k=50, responder_model="m", horizon=("run0", 2))
    assert found and all(c.responder_model == "m" and c.score <= 3 for c in found)
    assert not any(c.run_id == "run0" and c.level >= 2 for c in found)
    assert any(c.run_id == "run1" and c.level >= 2 for c in found)  # other runs: every level
    assert {c.run_id for c in memory.recall("point", k=50, run_id="run1")} == {"run1"}
    assert memory.recall("point", k=5, run_id="nobody") == []
    assert memory.recall("point", k=5, responder_model="nobody") == []
    assert len({(c.aspect, c.rationale) for c in found}) == len(found)  # one of each verdict


class _FailingOnce:
    """A collection whose first upsert raises, as if the process died between the two writes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.failed = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, **kwargs: Any) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("killed between the critiques and the lessons")
        self.inner.upsert(**kwargs)


def test_a_write_interrupted_before_the_lessons_is_completed_by_the_rerun(tmp_path: Path) -> None:
    batch = [c for c in records() if c.responder_model == "m"]
    memory = ChromaCritiqueMemory(client=chroma_client(tmp_path))
    memory._lessons["m"] = _FailingOnce(memory._lessons_for("m"))
    with pytest.raises(RuntimeError):
        memory.remember(batch)
    assert memory.count() == len({c.record_id for c in batch})  # the full collection was written
    reopened = ChromaCritiqueMemory(client=chroma_client(tmp_path))  # the resumed process
    reopened.remember(batch)
    lessons = {c.record_id for c in batch if c.score <= 3}
    assert set(reopened._lessons_for("m").get(include=[])["ids"]) == lessons
    clean = ChromaCritiqueMemory(client=chroma_client(tmp_path / "clean"))
    clean.remember(batch)
    assert answers(reopened) == answers(clean)


def test_icl_retrieval_is_exact_with_ties_by_example_order(tmp_path: Path) -> None:
    examples = [
        ICLExample(query=q, answer=f"answer {i}")
        for i, q in enumerate([*QUERIES, QUERIES[0], QUERIES[1], "zzz"])
    ]
    chroma = ChromaICLRetriever(examples, client=chroma_client(tmp_path))
    exact = InMemoryICLRetriever(examples)
    for probe in PROBES:
        for k in (1, 3, len(examples) + 2):
            assert chroma.retrieve(probe, k) == exact.retrieve(probe, k)
    twins = exact.retrieve(QUERIES[0], 2)
    assert [e.answer for e in twins] == ["answer 0", f"answer {len(QUERIES)}"]  # tie: earlier first
    assert ChromaICLRetriever(examples, client=chroma_client(tmp_path)).retrieve(
        PROBES[0], 4
    ) == exact.retrieve(PROBES[0], 4)


@pytest.mark.parametrize("density", [0.0, 1.0])
def test_sparse_and_dense_paths_rank_identically(monkeypatch: pytest.MonkeyPatch, density: float) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 32)).astype(np.float32)
    vectors[rng.random((400, 32)) < 0.9] = 0
    vectors[50:80] = vectors[0]
    keys = [f"k{i:03d}" for i in range(400)]
    reference = VectorTable()
    reference.add(vectors, keys)
    monkeypatch.setattr("drpo_agents.vectors.SPARSE_DENSITY", density)
    table = VectorTable()
    order = rng.permutation(400)
    table.add(vectors[order], [keys[i] for i in order])
    for probe in (vectors[0], rng.standard_normal(32), vectors[7]):
        monkeypatch.setattr("drpo_agents.vectors.SPARSE_DENSITY", 0.125)
        expected = [keys[i] for i in reference.rank(probe, limit=40)]
        monkeypatch.setattr("drpo_agents.vectors.SPARSE_DENSITY", density)
        assert [keys[order[i]] for i in table.rank(probe, limit=40)] == expected


# -- a Chroma server that dies mid-run ---------------------------------------------------------


def _chroma(path: Path, port: int) -> subprocess.Popen[bytes]:
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        pytest.skip("the chroma CLI is not installed next to this Python")
    with (path.parent / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
    wait_until_serving(f"http://127.0.0.1:{port}/api/v2/heartbeat", process)
    return process


@pytest.fixture
def stoppable(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=30)


def drpo_as(run_id: str, *args: str, cwd: Path, pause: list[str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.chroma_outage", run_id, *(pause or []), "--", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def finished(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.server
def test_a_chroma_server_lost_mid_level_stops_the_run_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path, postgres_url: str, stoppable: list[subprocess.Popen[bytes]]
) -> None:
    args = ("optimize", "--sandbox", *SMALL, "--quiet")
    clean = finished(drpo_as("run-x", *args, "--run-dir", "clean", "--memory", "clean-memory", cwd=tmp_path))
    assert clean.returncode == 0, clean.stderr[-3000:]

    port, data = _free_port(), tmp_path / "chroma-data"
    stoppable.append(_chroma(data, port))
    url = f"http://127.0.0.1:{port}"
    paused, go = tmp_path / "paused", tmp_path / "go"
    run = ("--run-dir", "run", "--memory", url, "--checkpointer", postgres_url)
    process = drpo_as("run-x", *args, *run, cwd=tmp_path, pause=[str(paused), str(go)])
    try:
        # level 2's rewrite is about to recall
        wait_for_file(process, paused, "the run never reached level 2")
        stoppable[0].kill()
        stoppable[0].wait(timeout=30)
        go.write_text("go", encoding="utf-8")
        stopped = finished(process)
    finally:
        process.kill()
    line = one_error(stopped, 1, "Chroma server", "--checkpointer")
    assert resume_dir(line) == "run" and not (tmp_path / "run" / "artifact.json").exists()

    stoppable.append(_chroma(data, port))  # the server is back, on the same data
    resumed = finished(
        drpo_as("run-x", "resume", "run", "--quiet", "--checkpointer", postgres_url, cwd=tmp_path)
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first, second = (AlignmentArtifact.load(tmp_path / d / "artifact.json") for d in ("clean", "run"))
    assert second.model_dump(exclude={"created_at"}) == first.model_dump(exclude={"created_at"})
    server_records = ChromaCritiqueMemory(client=chroma_client(url)).collection.get(include=[])["ids"]
    local_records = ChromaCritiqueMemory(client=chroma_client(tmp_path / "clean-memory")).collection.get(
        include=[]
    )
    assert sorted(server_records) == sorted(local_records["ids"])
