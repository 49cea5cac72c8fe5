"""One call from training queries to an :class:`AlignmentArtifact`: compile, run, save."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

from langchain_core.callbacks import Callbacks
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.aspects import AspectCatalog
from drpo_agents.calls import run_sync
from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import normalize_queries
from drpo_agents.schemas import ICLExample
from drpo_agents.search.graph import create_drpo_graph
from drpo_agents.search.state import DRPOInput

ARTIFACT_FILE = "artifact.json"
CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoints.sqlite"

ProgressCallback = Callable[[str, dict[str, Any]], None]


async def aoptimize(
    queries: Sequence[Any],
    *,
    responder: str | BaseLanguageModel[Any],
    judge: str | BaseChatModel,
    rewriter: str | BaseChatModel | None = None,
    config: DRPOConfig | None = None,
    icl_examples: Sequence[ICLExample] | None = None,
    embeddings: Embeddings | None = None,
    aspects: AspectCatalog | None = None,
    run_dir: str | Path | None = None,
    run_id: str | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    callbacks: Callbacks = None,
    on_progress: ProgressCallback | None = None,
) -> AlignmentArtifact:
    """Run a DRPO optimisation and return its artifact.

    Args:
        queries: training queries (strings or ``{"id", "query"}`` dicts); validated before any call.
        responder, judge, rewriter: models or ``"provider:model"`` strings (see :func:`create_drpo_graph`).
        config: search hyper-parameters.
        icl_examples, embeddings, aspects: see :func:`create_drpo_graph`.
        run_dir: if given, the run writes ``config.json``, ``checkpoints.sqlite`` and
            ``artifact.json`` there, and is checkpointed in SQLite under ``run_id``.
        run_id: the run's id (also the checkpoint thread id); generated if omitted.
        checkpointer: a checkpointer to use instead of the run directory's SQLite file.
        callbacks: LangChain callbacks for every node and model call (tracing, logging).
        on_progress: called as ``on_progress(node_name, update)`` after every graph step.
    """
    cfg = config or DRPOConfig()
    normalize_queries(queries)  # fail on bad input before building anything
    run_id = run_id or uuid.uuid4().hex[:12]
    graph = create_drpo_graph(
        responder,
        judge,
        rewriter,
        config=cfg,
        icl_examples=icl_examples,
        embeddings=embeddings,
        aspects=aspects,
    )
    directory = Path(run_dir) if run_dir is not None else None
    async with AsyncExitStack() as stack:
        if checkpointer is None and directory is not None:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            directory.mkdir(parents=True, exist_ok=True)
            checkpointer = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(str(directory / CHECKPOINT_FILE))
            )
        if directory is not None:
            (directory / CONFIG_FILE).write_text(
                json.dumps({"run_id": run_id, "config": cfg.to_json_dict()}, indent=2), encoding="utf-8"
            )
        app = graph.compile(checkpointer=checkpointer, name="drpo")
        run_config: dict[str, Any] = {
            "configurable": {"thread_id": run_id},
            "max_concurrency": cfg.max_concurrency,
            "recursion_limit": 10 * (cfg.max_levels + 2),
            "callbacks": callbacks,
            "run_name": "drpo_optimize",
            "metadata": {"drpo_run_id": run_id},
        }
        final: dict[str, Any] = {}
        inputs: DRPOInput = {"queries": list(queries), "run_id": run_id}
        async for chunk in app.astream(inputs, cast(RunnableConfig, run_config), stream_mode="updates"):
            for node, update in chunk.items():
                if on_progress is not None and isinstance(update, dict):
                    on_progress(node, update)
                if node == "finalize" and isinstance(update, dict):
                    final = update
    artifact = AlignmentArtifact.model_validate(final["artifact"])
    if directory is not None:
        artifact.save(directory / ARTIFACT_FILE)
    return artifact


def optimize(queries: Sequence[Any], **kwargs: Any) -> AlignmentArtifact:
    """Blocking :func:`aoptimize` (safe to call from Jupyter, where a loop is already running)."""
    return run_sync(aoptimize(queries, **kwargs))
