"""Driving one run: its stores opened, the graph compiled with its checkpointer, streamed to the end
(progress reported, a review asked for), the artifact saved; and the run's record in ``config.json``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.config import DRPOConfig
from drpo_agents.errors import ConfigError, DRPOError, ReviewRequired
from drpo_agents.infra.cache import SQLiteLLMCache
from drpo_agents.infra.checkpoints import open_checkpointer
from drpo_agents.infra.journal import ResponseJournal
from drpo_agents.infra.run_files import ARTIFACT_FILE, CACHE_FILE, JOURNAL_FILE
from drpo_agents.json_types import JsonObject
from drpo_agents.memory.stores import memory_location, open_memory
from drpo_agents.models.roles import prepare_role_models
from drpo_agents.resumption import warn_model_change
from drpo_agents.run_record import RunRecord
from drpo_agents.run_spec import ProgressEvent, RunModels, RunResources
from drpo_agents.search.graph import create_drpo_graph
from drpo_agents.search.resume import finished_artifact
from drpo_agents.search.state import DRPOInput, DRPOUpdate

_RESUME_WITH_REVIEW = (
    "resume(run_dir, review={'action': 'approve' | 'reject'} or {'action': 'edit', 'prompt': ...})"
)


@dataclass(frozen=True)
class Resumption:
    """How a resume continues a run from its checkpoint.

    Attributes:
        record: the run's record as the resume changes it, saved once the run goes on (never
            for a refused change, nor for a finished run that has nothing left to do).
        review: the answer to a run paused for review, if any.
        extend_depth: levels added to a finished run.
    """

    record: RunRecord
    review: Any = None
    extend_depth: int = 0
    model_change: str | None = None  # other models than the run's, allowed (said once the run goes on)


def resolved_models(models: RunModels, config: DRPOConfig) -> tuple[RunModels, dict[str, str]]:
    """The run's models resolved from their strings and capped, once (the graph is built from
    these), and their identities as the artifact names them."""
    roles = prepare_role_models(
        judge=models.judge,
        responder=models.responder,
        rewriter=models.rewriter,
        jury=models.jury,
        max_tokens=config.role_max_tokens,
    )
    assert roles.responder is not None and roles.rewriter is not None  # a search has both roles
    return RunModels(roles.responder, roles.judge, roles.rewriter, roles.jury), roles.identities()


async def run(
    start: DRPOInput | Resumption,
    models: RunModels,
    config: DRPOConfig,
    resources: RunResources,
    run_id: str,
) -> AlignmentArtifact:
    """Run the search from its inputs, or resume it from its checkpoint; save and return the artifact."""
    async with _stores(models, config, resources) as app:
        run_config = _run_config(config, resources, run_id)
        step: Any = start
        if isinstance(start, Resumption):
            if app.checkpointer is None:
                raise ConfigError("resuming needs a checkpointer (a run directory or a PostgreSQL URL)")
            finished = await finished_artifact(app, run_config, config, start.extend_depth)
            if finished is not None:  # nothing runs, so nothing changes
                if start.model_change:
                    warn_model_change(run_id, start.model_change, finished=True)
                return _saved(AlignmentArtifact.model_validate(finished), resources.run_dir)
            if resources.run_dir is not None:
                start.record.save(resources.run_dir)  # the checkpoint took the change
            if start.model_change:
                warn_model_change(run_id, start.model_change)
            step = None if start.review is None else Command(resume=start.review)
        final: JsonObject | None = None
        while True:
            final = await _stream(app, step, run_config, resources)
            if final is not None or app.checkpointer is None:
                break
            pending = (await app.aget_state(run_config)).interrupts
            if not pending:
                break
            request = pending[0].value
            if resources.reviewer is None:
                raise ReviewRequired(
                    f"run {run_id!r} is paused for review of its final prompt; resume it with {_RESUME_WITH_REVIEW}",
                    request,
                )
            step = Command(resume=resources.reviewer(request))
    if final is None:
        raise DRPOError(f"run {run_id!r} ended without an artifact")
    return _saved(AlignmentArtifact.model_validate(final), resources.run_dir)


@asynccontextmanager
async def _stores(
    models: RunModels, config: DRPOConfig, resources: RunResources
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """The compiled graph over the run's memory, LLM cache, response journal and checkpointer,
    all closed when the run ends (however it ends)."""
    run_dir = resources.run_dir
    memory = open_memory(
        memory_location(resources.memory, run_dir),
        enabled=config.critique_memory,
        embeddings=resources.embeddings,
        min_similarity=config.icl_min_similarity,
    )
    async with AsyncExitStack() as stack:
        cache = SQLiteLLMCache(run_dir / CACHE_FILE) if run_dir is not None else None
        journal = ResponseJournal(run_dir / JOURNAL_FILE) if run_dir is not None else None
        for store in (cache, journal):
            if store is not None:
                stack.callback(store.close)
        graph = create_drpo_graph(
            models.responder,
            models.judge,
            models.rewriter,
            config=config,
            icl_examples=resources.icl_examples,
            embeddings=resources.embeddings,
            aspects=resources.aspects,
            icl_retriever_factory=memory.icl_retrievers,
            memory=memory.critiques,
            cache=cache,
            jury=models.jury,
            journal=journal,
        )
        saver = await stack.enter_async_context(open_checkpointer(resources.checkpointer, run_dir))
        yield graph.compile(checkpointer=saver, name="drpo")


def _run_config(config: DRPOConfig, resources: RunResources, run_id: str) -> RunnableConfig:
    return cast(
        RunnableConfig,
        {
            "configurable": {"thread_id": run_id},
            "max_concurrency": config.max_concurrency,
            "recursion_limit": 10 * (config.max_levels + 2),
            "callbacks": resources.callbacks,
            "run_name": "drpo_optimize",
            "metadata": {"drpo_run_id": run_id},
        },
    )


async def _stream(
    app: CompiledStateGraph[Any, Any, Any, Any],
    step: Any,
    run_config: RunnableConfig,
    resources: RunResources,
) -> JsonObject | None:
    """Run the graph until it ends or pauses; the artifact if ``finalize`` wrote one."""
    final: JsonObject | None = None
    async for chunk in app.astream(step, run_config, stream_mode="updates"):
        for node, update in chunk.items():
            if not isinstance(update, dict):
                continue
            if resources.on_progress is not None:
                resources.on_progress(progress_event(node, cast(DRPOUpdate, update)))
            if node == "finalize" and "artifact" in update:
                final = update["artifact"]
    return final


def progress_event(node: str, update: DRPOUpdate) -> ProgressEvent:
    """What a progress callback is told of one finished step."""
    levels = update.get("levels") or []
    last = levels[-1] if levels else None
    return {
        "node": node,
        "calls": sum(u.get("calls", 0) for u in (update.get("usage") or {}).values()),
        "level": last["level"] if last else None,
        "depth": last["depth_limit"] if last else None,
        "best_mean_reward": last["beam_mean_rewards"][0] if last and last["beam_mean_rewards"] else None,
    }


def _saved(artifact: AlignmentArtifact, run_dir: Path | None) -> AlignmentArtifact:
    if run_dir is not None:
        artifact.save(run_dir / ARTIFACT_FILE)
    return artifact
