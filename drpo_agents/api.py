"""From training queries to an :class:`AlignmentArtifact` in one call: compile, run, save, resume.

A run directory holds everything a run needs to be inspected or resumed
(:mod:`drpo_agents.infra.run_files` lists its files).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from langchain_core.callbacks import Callbacks

from drpo_agents import runner
from drpo_agents.artifact import AlignmentArtifact, ArtifactSource
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import ConfigLike, as_config
from drpo_agents.datasets import normalize_queries
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.icl_sets import ICLExampleInput, parse_icl_examples
from drpo_agents.infra.calls import blocking_twin
from drpo_agents.infra.checkpoints import check_checkpoint_file
from drpo_agents.infra.run_files import CHECKPOINT_FILE
from drpo_agents.memory.chroma_connection import check_location
from drpo_agents.memory.stores import MemoryLocation, memory_location
from drpo_agents.resumption import checked_models, resumed_config, stored_models
from drpo_agents.run_record import RunRecord
from drpo_agents.run_spec import (
    ChatModel,
    Checkpointer,
    ProgressCallback,
    ResponderModel,
    Reviewer,
    RunModels,
    RunResources,
)
from drpo_agents.runner import resolved_models
from drpo_agents.schemas import ICLExample
from drpo_agents.search.state import DRPOInput
from drpo_agents.warm_start import starting_point, warm_started


async def arun_optimization(
    queries: Sequence[Any],
    models: RunModels,
    resources: RunResources | None = None,
    config: ConfigLike = None,
    start_from: ArtifactSource | None = None,
) -> AlignmentArtifact:
    """:func:`aoptimize` from the run's spec records (what the CLI builds once)."""
    resources = resources or RunResources()
    cfg = as_config(config)
    normalize_queries(queries)  # fail on bad input before building anything
    check_location(resources.memory)  # a token in a Chroma URL never reaches config.json
    inputs: DRPOInput = {"queries": list(queries)}
    if start_from is not None:
        point = starting_point(start_from)
        cfg, examples = warm_started(cfg, resources.icl_examples, point)
        resources = replace(resources, icl_examples=examples)
        # In the run's input, so a resume in a new process starts from the same place.
        inputs["icl_examples"] = [e.model_dump() for e in examples]
        inputs["parent"] = point.parent.model_dump()
    run_id = resources.run_id or uuid.uuid4().hex[:12]
    resolved, identities = resolved_models(models, cfg)
    if resources.run_dir is not None:
        location = memory_location(resources.memory, resources.run_dir)
        memory = str(location) if isinstance(location, str | Path) else None
        RunRecord(run_id, cfg, models.specs(), memory, identities).save(resources.run_dir)
    return await runner.run({**inputs, "run_id": run_id}, resolved, cfg, resources, run_id)


async def aoptimize(
    queries: Sequence[Any],
    *,
    responder: ResponderModel,
    judge: ChatModel,
    rewriter: ChatModel | None = None,
    config: ConfigLike = None,
    icl_examples: Sequence[ICLExampleInput] | None = None,
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
    start_from: ArtifactSource | None = None,
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
        start_from: an earlier result to start from (warm start): an artifact, ``artifact.json``,
            a run folder or an imported published prompt. Its prompt becomes the initial
            candidate and its ICL examples the seed set (``icl_examples`` replaces them); the
            new artifact's ``parent`` names it. See :mod:`drpo_agents.warm_start`.
    """
    return await arun_optimization(
        queries,
        RunModels(responder, judge, rewriter, jury),
        RunResources(
            run_dir=Path(run_dir) if run_dir is not None else None,
            run_id=run_id,
            memory=memory,
            checkpointer=checkpointer,
            icl_examples=None if icl_examples is None else parse_icl_examples(icl_examples, "icl_examples"),
            embeddings=embeddings,
            aspects=aspects,
            callbacks=callbacks,
            on_progress=on_progress,
            reviewer=reviewer,
        ),
        config,
        start_from,
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
    extend_depth: int = 0,
    allow_model_change: bool = False,
) -> AlignmentArtifact:
    """Continue a stopped or crashed run from its last checkpoint; finished calls are not repeated.

    The config and run id come from ``run_dir/config.json``. Models given as strings when the
    run started (and sandbox or local instances) are rebuilt; pass other model instances again.
    A run that already finished returns its artifact.

    Args:
        config_overrides: new values for the settings a resume may change
            (:data:`~drpo_agents.resumption.RESUMABLE_SETTINGS`): a larger ``max_tokens_budget`` or
            ``max_cost`` continues a run its budget stopped; ``max_concurrency``; ``prices``. Any
            other setting is refused (the levels already run used the old value); the accepted
            ones are saved into ``config.json``.
        review: the answer to a run paused for review (see :func:`aoptimize`'s ``reviewer``).
        extend_depth: levels to add to a finished run: its search continues after its last level
            (refused, with the reason, when its training queries are all used or its budget is spent).
        allow_model_change: resume with models other than the run's (refused otherwise: one search
            would compare answers and scores of different models); a warning names the change.
        responder, judge, rewriter, jury, icl_examples, embeddings, aspects, memory, checkpointer,
            callbacks, on_progress, reviewer: as for :func:`aoptimize`.

    Raises:
        ConfigError: a refused setting or model change, or an extension that cannot add a level;
            nothing is written then.
    """
    directory = Path(run_dir)
    record = RunRecord.load(directory)
    config = resumed_config(record.config, config_overrides, extend_depth)
    if checkpointer is None:
        check_checkpoint_file(directory / CHECKPOINT_FILE)
    given = stored_models(record.models, responder, judge, rewriter, jury)
    models, identities = resolved_models(given, config)
    change = checked_models(record, identities, allow_model_change)
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
    changed = replace(record, config=config, identities=identities, models=given.specs())
    resumption = runner.Resumption(changed, review, extend_depth, change)
    return await runner.run(resumption, models, config, resources, record.run_id)


# Twins made by one wrapper, so their parameters are aoptimize's and aresume's by construction
# (type checkers, IDEs and inspect.signature see them), not copies that could drift.
optimize = blocking_twin(
    aoptimize,
    "optimize",
    "Blocking :func:`aoptimize`, with its parameters (safe to call from Jupyter, where a loop is "
    "already running).",
)
resume = blocking_twin(aresume, "resume", "Blocking :func:`aresume`, with its parameters.")
