"""The deployed graph (graphs/drpo.py) has what a CLI run has: critique memory, ICL retrieval in
Chroma, the LLM cache and the response journal, all from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drpo_agents.datasets import load_training_queries
from drpo_agents.errors import ConfigError
from drpo_agents.memory import ChromaCritiqueMemory, chroma_client
from drpo_agents.serving import create_server_graph

CONFIG = {"depth": 2, "beam_size": 1, "n_actions": 2, "queries_per_step": 2, "seed": 0}


def test_server_runs_share_the_memory_and_journal_it_opens(tmp_path: Path) -> None:
    env = {"DRPO_CONFIG": json.dumps(CONFIG), "DRPO_SERVER_DIR": str(tmp_path / "server")}
    graph = create_server_graph(env)
    queries = load_training_queries()
    first = graph.invoke({"queries": queries[:10], "run_id": "server-1"})["artifact"]
    data = tmp_path / "server"
    assert {p.name for p in data.iterdir()} >= {"memory", "responses.sqlite", "llm_cache.sqlite"}
    assert data.stat().st_mode & 0o777 == 0o700
    # A server restarted later: the memory on disk holds the first run, finished.
    restarted = create_server_graph(env)
    second = restarted.invoke({"queries": queries[10:20], "run_id": "server-2"})["artifact"]
    memory = ChromaCritiqueMemory(client=chroma_client(data / "memory"))
    assert memory.finished_runs() == {"server-1", "server-2"}
    assert {c.run_id for c in memory.critiques_of(first["models"]["responder"])} == {"server-1", "server-2"}
    assert "server-1" in {run for c in second["candidates"] for run in c.get("lesson_runs", [])}


def test_a_bad_setting_stops_the_server_at_start_with_one_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DRPO_CONFIG is not a JSON object"):
        create_server_graph({"DRPO_CONFIG": "{depth: 2}", "DRPO_SERVER_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="invalid Chroma server URL"):
        create_server_graph({"DRPO_MEMORY": "http://127.0.0.1:9/chroma", "DRPO_SERVER_DIR": str(tmp_path)})
