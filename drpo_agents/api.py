"""From training queries to an :class:`AlignmentArtifact` in one call: compile, run, save, resume.

A run directory holds everything a run needs to be inspected or resumed
(:mod:`drpo_agents.infra.run_files` lists its files).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from langchain_core.callbacks import Callbacks

from drpo_agents import runner
from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import ConfigLike, as_config
from drpo_agents.datasets import normalize_queries
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.infra.calls import run_sync
from drpo_agents.infra.checkpoints import check_checkpoint_file
from drpo_agents.infra.run_files import CHECKPOINT_FILE
from drpo_agents.memory.stores import MemoryLocation, memory_location
from drpo_agents.run_spec import (
    ChatModel,
    Checkpointer,
    ProgressCallback,
    ResponderModel,
    Reviewer,
    RunModels,
    RunResources,
)
from drpo_agents.runner import RunRecord, stored_models
from drpo_agents.schemas import ICLExample

P = ParamSpec("P")
T = TypeVar("T")


async def arun_optimization(
    queries: Sequence[Any],
    models: RunModels,
    resources: RunResources | None = None,
    config: ConfigLike = None,
) -> AlignmentArtifact:
    """:func:`aoptimize` from the run's spec records (what the CLI builds once)."""
    resources = resources or RunResources()
    cfg = as_config(config)
    normalize_queries(queries)  # fail on bad input before building anything
    run_id = resources.run_id or uuid.uuid4().hex[:12]
    if resources.run_dir is not None:
        location = memory_location(resources.memory, resources.run_dir)
        memory = str(location) if isinstance(location, str | Path) else None
        RunRecord(run_id, cfg, models.identities(), memory).save(resources.run_dir)
    return await runner.run({"queries": list(queries), "run_id": run_id}, models, cfg, resources, run_id)


async def aoptimize(
    queries: Sequence[Any],
    *,
    responder: ResponderModel,
    judge: ChatModel,
    rewriter: ChatModel | None = None,
    config: ConfigLike = None,
    icl_examples: Sequence[ICLExample] | None = None,
    embeddings: EmbeddingsLike | None = None,
    aspects: AspectCatalog | None = None,
    run_dir: str | Path | None = None,
    run_id: str | None = None,
    memory: MemoryLocation = None,
    checkpointer: Checkpointer = None,
    callbacks: Callbacks = None,
    on_progress: ProgressCallback | None = None,
    reviewer: Reviewer | None = None,
    jury: Sequence[ChatModel] = (),
) -> AlignmentArtifact:
    """Run a DRPO optimisation and return its artifact.

    Args:
        queries: training queries (strings or ``{"id", "query"}`` dicts); validated before any call.
        responder, judge, rewriter: models or ``"provider:model"`` strings (see :func:`create_drpo_graph`).
        config: search hyper-parameters: a :class:`DRPOConfig` or a dict of its fields.
        icl_examples, embeddings, aspects: see :func:`create_drpo_graph`.
        run_dir: if given, the run keeps its config, checkpoints, LLM cache, Chroma data and
            artifact there, and can be continued with :func:`resume` after a crash or stop.
        run_id: the run's id (also the checkpoint thread id); generated if omitted.
        memory: where critiques (and ICL examples) are kept: a folder, an ``http://host:port``
            Chroma server, or a :class:`CritiqueMemory`. Share one location between runs so a
            run learns from earlier runs of the same responder model. Default: ``run_dir/memory``,
            the run's own (in-process without a run directory); ``config.critique_memory`` turns
            it off.
        checkpointer: a checkpointer or a ``postgresql://`` URL instead of the run directory's SQLite.
        callbacks: LangChain callbacks for every node and model call (tracing, logging).
        on_progress: called with a :class:`~drpo_agents.run_spec.ProgressEvent` after every graph step.
        reviewer: with ``config.review``, called with the review request (final prompt, initial
            prompt, rewards); returns ``{"action": "approve" | "reject"}`` or
            ``{"action": "edit", "prompt": ...}``. Without one the run pauses and
            :class:`ReviewRequired` is raised; continue with ``resume(run_dir, review=...)``.
        jury: further judges scoring every answer beside ``judge`` (see :func:`create_drpo_graph`).
    """
    return await arun_optimization(
        queries,
        RunModels(responder, judge, rewriter, jury),
        RunResources(
            run_dir=Path(run_dir) if run_dir is not None else None,
            run_id=run_id,
            memory=memory,
            checkpointer=checkpointer,
            icl_examples=icl_examples,
            embeddings=embeddings,
            aspects=aspects,
            callbacks=callbacks,
            on_progress=on_progress,
            reviewer=reviewer,
        ),
        config,
    )


async def aresume(
    run_dir: str | Path,
    *,
    responder: ResponderModel | None = None,
    judge: ChatModel | None = None,
    rewriter: ChatModel | None = None,
    icl_examples: Sequence[ICLExample] | None = None,
    embeddings: EmbeddingsLike | None = None,
    aspects: AspectCatalog | None = None,
    memory: MemoryLocation = None,
    checkpointer: Checkpointer = None,
    callbacks: Callbacks = None,
    on_progress: ProgressCallback | None = None,
    config_overrides: Mapping[str, object] | None = None,
    reviewer: Reviewer | None = None,
    review: Any = None,
    jury: Sequence[ChatModel] | None = None,
) -> AlignmentArtifact:
    """Continue a stopped or crashed run from its last checkpoint; finished calls are not repeated.

    ``config_overrides`` change settings that are safe to change mid-run, such as a larger
    ``max_tokens_budget`` / ``max_cost`` (a run stopped by its budget then continues) or
    ``max_concurrency``; they are saved back into ``config.json``. ``review`` answers a run
    paused for review (see :func:`aoptimize`'s ``reviewer``).

    The config and run id come from ``run_dir/config.json``. Models given as strings when the
    run started are rebuilt from those strings; pass model instances again otherwise (they
    must be the same models). A run that already finished returns its artifact.
    """
    directory = Path(run_dir)
    record = RunRecord.load(directory, config_overrides)
    if checkpointer is None:
        check_checkpoint_file(directory / CHECKPOINT_FILE)
    if config_overrides:
        record.save(directory)
    resources = RunResources(
        run_dir=directory,
        run_id=record.run_id,
        memory=memory if memory is not None else record.memory,
        checkpointer=checkpointer,
        icl_examples=icl_examples,
        embeddings=embeddings,
        aspects=aspects,
        callbacks=callbacks,
        on_progress=on_progress,
        reviewer=reviewer,
    )
    models = stored_models(record.models, responder, judge, rewriter, jury)
    return await runner.run(None, models, record.config, resources, record.run_id, review)


def _blocking(coroutine_function: Callable[P, Coroutine[Any, Any, T]], name: str, doc: str) -> Callable[P, T]:
    """The blocking twin of ``coroutine_function``: the same typed parameters, run by :func:`run_sync`."""

    @functools.wraps(coroutine_function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(coroutine_function(*args, **kwargs))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    return call


# Twins made by one wrapper, so their parameters are aoptimize's and aresume's by construction
# (type checkers, IDEs and inspect.signature see them), not copies that could drift.
optimize = _blocking(
    aoptimize,
    "optimize",
    "Blocking :func:`aoptimize`, with its parameters (safe to call from Jupyter, where a loop is "
    "already running).",
)
resume = _blocking(aresume, "resume", "Blocking :func:`aresume`, with its parameters.")
