"""The DRPO graph a LangGraph Server deployment runs, with the stores a CLI run has: critique
memory, ICL retrieval, LLM cache and response journal (``graphs/drpo.py`` is this, compiled).

Read from the environment, so one deployment can align any model:

* ``DRPO_RESPONDER``, ``DRPO_JUDGE``, ``DRPO_REWRITER``: "provider:model" strings (default
  "sandbox", the offline simulation); ``DRPO_CONFIG``: a JSON object of DRPOConfig fields.
* ``DRPO_MEMORY``: the critique memory, a ``http(s)://host:port`` Chroma server shared by the
  team (its token and CA: :mod:`drpo_agents.memory.chroma_connection`) or a folder. Default:
  ``DRPO_SERVER_DIR/memory``, an embedded Chroma for this server alone (one process only).
* ``DRPO_SERVER_DIR``: where the server's LLM cache and response journal live (default
  ``drpo-server`` in the working directory, created owner-only). The journal is what lets a
  run the server resumes, after a crash, skip the model calls that had finished.

The server checkpoints the graph itself (no checkpointer is compiled in).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from drpo_agents.config import DRPOConfig
from drpo_agents.errors import ConfigError
from drpo_agents.infra.cache import SQLiteLLMCache
from drpo_agents.infra.journal import ResponseJournal
from drpo_agents.infra.run_files import CACHE_FILE, JOURNAL_FILE, MEMORY_DIR, private_folder
from drpo_agents.memory.stores import open_memory
from drpo_agents.search.graph import create_drpo_graph

SERVER_DIR_ENV = "DRPO_SERVER_DIR"
MEMORY_ENV = "DRPO_MEMORY"
DEFAULT_SERVER_DIR = "drpo-server"


def server_config(environ: Mapping[str, str]) -> DRPOConfig:
    """``DRPO_CONFIG`` as a :class:`DRPOConfig` (defaults when unset).

    Raises:
        ConfigError: not a JSON object of valid DRPOConfig fields.
    """
    text = environ.get("DRPO_CONFIG", "{}")
    try:
        return DRPOConfig.model_validate(json.loads(text))
    except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
        raise ConfigError(f"DRPO_CONFIG is not a JSON object of DRPOConfig fields: {exc}") from exc


def create_server_graph(environ: Mapping[str, str] | None = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The deployed DRPO graph, configured by ``environ`` (default ``os.environ``; see the module
    docstring). Its stores are opened here, so a wrong Chroma token or an unreachable memory
    stops the server at start-up with one message, not its first run.

    Raises:
        ConfigError: a bad setting, or credentials the Chroma server refuses.
        ServiceUnavailableError: the Chroma server named by ``DRPO_MEMORY`` cannot be reached.
    """
    env = os.environ if environ is None else environ
    config = server_config(env)
    data_dir = private_folder(Path(env.get(SERVER_DIR_ENV) or DEFAULT_SERVER_DIR))
    memory = open_memory(
        env.get(MEMORY_ENV) or data_dir / MEMORY_DIR,
        enabled=config.critique_memory,
        min_similarity=config.icl_min_similarity,
    )
    return create_drpo_graph(
        env.get("DRPO_RESPONDER", "sandbox"),
        env.get("DRPO_JUDGE", "sandbox"),
        env.get("DRPO_REWRITER") or None,
        config=config,
        memory=memory.critiques,
        icl_retriever_factory=memory.icl_retrievers,
        cache=SQLiteLLMCache(data_dir / CACHE_FILE),
        journal=ResponseJournal(data_dir / JOURNAL_FILE),
    ).compile(name="drpo")
