"""Load held: 8 runs at once on one ``langgraph dev`` server, and 8 CLI runs at once sharing one
PostgreSQL for checkpoints, all with one Chroma server (behind a token proxy) as memory. All
complete, none is lost, the memory holds the union of their records, and each run's artifact
equals the same run made alone. Everything talks to 127.0.0.1 only; every wait is bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest

from drpo_agents import DRPOConfig, create_drpo_graph
from drpo_agents.datasets import load_training_queries
from drpo_agents.memory import ChromaCritiqueMemory, InMemoryCritiqueMemory

from .servers import chroma_server, postgres_url  # noqa: F401  (fixtures)
from .test_cli_errors import ENV
from .test_crash_consistency import _empty_chroma, _fresh_database
from .test_langgraph_server import CONFIG as SERVER_CONFIG
from .test_langgraph_server import running_server, sdk_client
from .token_proxy import TokenProxy

pytestmark = [pytest.mark.server, pytest.mark.slow]

RUNS = 8
TOKEN = "chroma-load-NOT-A-REAL-TOKEN-51c2"
QUERIES = load_training_queries()
CLI_FLAGS = ["--sandbox", "--depth", "2", "--beam-size", "2", "--n-actions", "2", "--queries-per-step", "2"]


@pytest.fixture
def memory_url(chroma_server: str) -> Iterator[str]:  # noqa: F811
    """The Chroma server emptied, behind a proxy that wants the token."""
    _empty_chroma(chroma_server)
    with TokenProxy(int(chroma_server.rsplit(":", 1)[1]), TOKEN) as proxy:
        yield proxy.url


def normalized(artifact: dict[str, Any]) -> str:
    """An artifact as JSON without its creation time and with its run id written "RUN"."""
    return json.dumps({**artifact, "created_at": None}, sort_keys=True).replace(artifact["run_id"], "RUN")


def stored_records(url: str) -> dict[str, set[str]]:
    """The critiques in the Chroma server, per run, each as its metadata with the run id "RUN"."""
    port = int(url.rsplit(":", 1)[1])
    reader = chromadb.HttpClient(host="127.0.0.1", port=port, headers={"Authorization": f"Bearer {TOKEN}"})
    collection = reader.get_collection("drpo-critiques")
    by_run: dict[str, set[str]] = {}
    for meta in collection.get(include=["metadatas"])["metadatas"] or []:
        run = str(meta["run_id"])
        by_run.setdefault(run, set()).add(json.dumps({**meta, "run_id": "RUN"}, sort_keys=True))
    return by_run


def own_records(memory: ChromaCritiqueMemory | InMemoryCritiqueMemory, run_id: str) -> set[str]:
    """The records a run made alone, in the form of :func:`stored_records`."""
    table = memory.collection.get(include=["metadatas"]) if isinstance(memory, ChromaCritiqueMemory) else None
    metas = table["metadatas"] if table else [c.__dict__ for c in memory._table.critiques]  # type: ignore[union-attr]
    return {json.dumps({**m, "run_id": "RUN"}, sort_keys=True) for m in metas if m["run_id"] == run_id}


def test_eight_cli_runs_at_once_share_postgresql_and_chroma_and_each_ends_as_alone(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
    memory_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRPO_CHROMA_TOKEN", TOKEN)  # for this process's own reads of the memory
    database = _fresh_database(postgres_url)
    env = {**ENV, "DRPO_CHROMA_TOKEN": TOKEN}
    queries = [QUERIES[8 * i : 8 * i + 12] for i in range(RUNS)]
    for i in range(RUNS):
        lines = [json.dumps({"id": q["id"], "query": q["query"]}) for q in queries[i]]
        (tmp_path / f"queries-{i}.jsonl").write_text("\n".join(lines), encoding="utf-8")

    def command(i: int, *where: str) -> list[str]:
        flags = [*CLI_FLAGS, "--seed", str(i), "--queries", f"queries-{i}.jsonl", "--json"]
        return [sys.executable, "-m", "drpo_agents", "optimize", *flags, *where]

    started = time.monotonic()
    shared = [
        subprocess.Popen(
            command(i, "--run-dir", f"shared-{i}", "--memory", memory_url, "--checkpointer", database),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(RUNS)
    ]
    outputs = [process.communicate(timeout=600) for process in shared]
    wall = time.monotonic() - started
    failed = [
        (i, err[-1500:]) for i, (p, (_, err)) in enumerate(zip(shared, outputs, strict=True)) if p.returncode
    ]
    assert not failed, failed
    print(f"{RUNS} concurrent CLI runs (PostgreSQL checkpoints, Chroma memory via token proxy): {wall:.1f} s")

    run_ids = [_artifact(tmp_path / f"shared-{i}")["run_id"] for i in range(RUNS)]
    assert len(set(run_ids)) == RUNS, run_ids  # started in the same second, still distinct
    records = stored_records(memory_url)
    print(f"memory: {sum(map(len, records.values()))} critiques of {len(records)} runs")
    assert set(records) == set(run_ids)
    shared_artifacts = [_artifact(tmp_path / f"shared-{i}") for i in range(RUNS)]
    alone = Alone(
        {
            run_id: (DRPOConfig.model_validate(together["config"]), queries[i], together)
            for i, (run_id, together) in enumerate(zip(run_ids, shared_artifacts, strict=True))
        }
    )
    for i, (run_id, together) in enumerate(zip(run_ids, shared_artifacts, strict=True)):
        assert normalized(together) == normalized(alone.artifact(run_id)), f"run {i} differs"
        assert records[run_id] == alone.records(run_id), f"run {i}'s records differ"
    assert ChromaCritiqueMemory(client=_client(memory_url)).finished_runs() == set(run_ids)
    # Checkpoints of all eight are in the one database, one thread each.
    import psycopg

    with psycopg.connect(database) as connection:
        threads = {row[0] for row in connection.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert threads == set(run_ids)


def _artifact(run_dir: Path) -> dict[str, Any]:
    artifact: dict[str, Any] = json.loads((run_dir / "artifact.json").read_text(encoding="utf-8"))
    return artifact


def _client(url: str) -> Any:
    from drpo_agents.memory import chroma_client

    return chroma_client(url)


def test_eight_runs_at_once_on_one_langgraph_server_with_chroma_memory(
    tmp_path_factory: pytest.TempPathFactory, memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_env = {
        "DRPO_SERVER_TOKENS": f"load-test:{TOKEN}",
        "DRPO_MEMORY": memory_url,
        "DRPO_CHROMA_TOKEN": TOKEN,
    }
    inputs = [{"queries": QUERIES[6 * i : 6 * i + 10], "run_id": f"server-{i}"} for i in range(RUNS)]
    with running_server(tmp_path_factory, server_env) as (url, log):
        client = sdk_client(url, TOKEN)
        started = time.monotonic()
        threads = [client.threads.create()["thread_id"] for _ in range(RUNS)]
        runs = [client.runs.create(t, "drpo", input=x) for t, x in zip(threads, inputs, strict=True)]
        for thread_id, run in zip(threads, runs, strict=True):
            client.runs.join(thread_id, run["run_id"])
        wall = time.monotonic() - started
        statuses = [client.runs.get(t, r["run_id"])["status"] for t, r in zip(threads, runs, strict=True)]
        assert statuses == ["success"] * RUNS, f"{statuses}\n{log.read_text()[-3000:]}"
        artifacts = [client.threads.get_state(t)["values"]["artifact"] for t in threads]
    print(f"{RUNS} concurrent runs on langgraph dev (Chroma memory via token proxy): {wall:.1f} s")

    monkeypatch.setenv("DRPO_CHROMA_TOKEN", TOKEN)
    records = stored_records(memory_url)
    print(f"memory: {sum(map(len, records.values()))} critiques of {len(records)} runs")
    assert set(records) == {x["run_id"] for x in inputs}
    config = DRPOConfig.model_validate(SERVER_CONFIG)
    alone = Alone({x["run_id"]: (config, x["queries"], a) for x, a in zip(inputs, artifacts, strict=True)})
    for x, artifact in zip(inputs, artifacts, strict=True):
        expected = alone.artifact(x["run_id"])
        assert normalized(artifact) == normalized(expected), f"{x['run_id']} differs from the run made alone"
        assert records[x["run_id"]] == alone.records(x["run_id"]), f"{x['run_id']}'s records differ"
    ledger = ChromaCritiqueMemory(client=_client(memory_url))
    assert ledger.finished_runs("load-test") == {x["run_id"] for x in inputs}  # the server user's runs


class Alone:
    """Each run made alone, in this process, on a memory of its own that holds only what it saw:
    the runs its artifact names in ``memory_runs`` (finished when it began; each of them made
    alone in turn). A run that started before any other finished saw none."""

    def __init__(self, runs: dict[str, tuple[DRPOConfig, list[Any], dict[str, Any]]]) -> None:
        self.runs = {run_id: (config, queries) for run_id, (config, queries, _) in runs.items()}
        self.seen = {run_id: together["memory_runs"] for run_id, (_, _, together) in runs.items()}
        self.made: dict[str, tuple[dict[str, Any], InMemoryCritiqueMemory]] = {}
        saw = sum(bool(v) for v in self.seen.values())
        print(f"{saw} of {len(runs)} runs began after another had finished, and recalled its critiques")

    def artifact(self, run_id: str) -> dict[str, Any]:
        return self._make(run_id)[0]

    def records(self, run_id: str) -> set[str]:
        return own_records(self._make(run_id)[1], run_id)

    def _make(self, run_id: str) -> tuple[dict[str, Any], InMemoryCritiqueMemory]:
        if run_id not in self.made:
            memory = InMemoryCritiqueMemory()
            for earlier in self.seen[run_id]:
                own = [c for c in self._make(earlier)[1]._table.critiques if c.run_id == earlier]
                memory.remember(own)
                memory.finish_run(earlier)
            config, queries = self.runs[run_id]
            graph = create_drpo_graph("sandbox", "sandbox", config=config, memory=memory).compile()
            self.made[run_id] = (graph.invoke({"queries": queries, "run_id": run_id})["artifact"], memory)
        return self.made[run_id]
