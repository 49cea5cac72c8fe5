"""From training queries to an :class:`AlignmentArtifact` in one call: compile, run, save, resume.

A run directory holds everything a run needs to be inspected or resumed
(:mod:`drpo_agents.infra.run_files` lists its files).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from langchain_core.callbacks import Callbacks
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import ConfigLike, DRPOConfig, as_config
from drpo_agents.datasets import load_seed_icl_examples, normalize_queries
from drpo_agents.embeddings import EmbeddingsLike, resolve_embeddings
from drpo_agents.errors import ConfigError, DRPOError, ReviewRequired
from drpo_agents.infra.cache import SQLiteLLMCache
from drpo_agents.infra.calls import run_sync
from drpo_agents.infra.checkpoints import check_checkpoint_file, open_checkpointer
from drpo_agents.infra.journal import ResponseJournal
from drpo_agents.infra.run_files import (
    ARTIFACT_FILE,
    CACHE_FILE,
    CHECKPOINT_FILE,
    CHROMA_DIR,
    CONFIG_FILE,
    JOURNAL_FILE,
)
from drpo_agents.memory import CritiqueMemory, InMemoryCritiqueMemory
from drpo_agents.retrieval import ICLRetriever
from drpo_agents.run_spec import (
    ChatModel,
    Checkpointer,
    MemoryLocation,
    ProgressCallback,
    ResponderModel,
    Reviewer,
    RunModels,
    RunResources,
)
from drpo_agents.schemas import ICLExample
from drpo_agents.search.budget import spent
from drpo_agents.search.graph import create_drpo_graph
from drpo_agents.search.state import DRPOInput

P = ParamSpec("P")
T = TypeVar("T")

# Re-exported from their new homes, where callers import them from here.
__all__ = [
    "ARTIFACT_FILE",
    "CACHE_FILE",
    "CHECKPOINT_FILE",
    "CHROMA_DIR",
    "CONFIG_FILE",
    "Checkpointer",
    "ProgressCallback",
    "Reviewer",
    "aoptimize",
    "aresume",
    "arun_optimization",
    "open_checkpointer",
    "optimize",
    "resume",
]


async def _run(
    inputs: DRPOInput | None,
    models: RunModels,
    config: DRPOConfig,
    resources: RunResources,
    run_id: str,
    review: Any = None,
) -> AlignmentArtifact:
    run_dir, memory, embeddings = resources.run_dir, resources.memory, resources.embeddings
    examples = (
        list(resources.icl_examples) if resources.icl_examples is not None else load_seed_icl_examples()
    )
    critique_memory: CritiqueMemory
    retriever_factory: Callable[[list[ICLExample]], ICLRetriever] | None = None
    location = (
        memory if isinstance(memory, str | Path) else (run_dir / CHROMA_DIR if run_dir is not None else None)
    )
    if memory is not None and not isinstance(memory, str | Path):
        critique_memory = memory
    elif location is None:
        critique_memory = InMemoryCritiqueMemory()  # no run directory: nothing to persist
    else:
        from drpo_agents.memory.chroma import ChromaCritiqueMemory, ChromaICLRetriever, chroma_client

        client = chroma_client(location)
        critique_memory = ChromaCritiqueMemory(client=client)
        icl_embeddings = resolve_embeddings(embeddings)

        def retriever_factory(shots: list[ICLExample]) -> ICLRetriever:
            return ChromaICLRetriever(
                shots, client=client, embeddings=icl_embeddings, min_similarity=config.icl_min_similarity
            )

    cache = SQLiteLLMCache(run_dir / CACHE_FILE) if run_dir is not None else None
    journal = ResponseJournal(run_dir / JOURNAL_FILE) if run_dir is not None else None
    graph = create_drpo_graph(
        models.responder,
        models.judge,
        models.rewriter,
        config=config,
        icl_examples=examples,
        embeddings=embeddings,
        aspects=resources.aspects,
        icl_retriever_factory=retriever_factory,
        memory=critique_memory,
        cache=cache,
        jury=models.jury,
        journal=journal,
    )
    async with AsyncExitStack() as stack:
        saver = await stack.enter_async_context(open_checkpointer(resources.checkpointer, run_dir))
        app = graph.compile(checkpointer=saver, name="drpo")
        run_config = cast(
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
        if inputs is None:
            if saver is None:
                raise ConfigError("resuming needs a checkpointer (a run directory or a PostgreSQL URL)")
            snapshot = await app.aget_state(run_config)
            if not snapshot.values:
                raise DRPOError(f"no checkpoint for run {run_id!r}: nothing to resume")
            if not snapshot.next and "artifact" in snapshot.values:
                if not (snapshot.values.get("stopped_by_budget") and _budget_left(config, snapshot.values)):
                    return _finish(
                        AlignmentArtifact.model_validate(snapshot.values["artifact"]), run_dir, cache, journal
                    )
                # Stopped by a budget that has since been raised: reopen the search after the last
                # completed level (validation, if any, runs again at the new end).
                await app.aupdate_state(
                    run_config,
                    {
                        "stop_reason": "",
                        "stopped_by_budget": False,
                        "validation": [],
                        "validated_best": "",
                        "level": _last_search_level(snapshot.values),
                    },
                    as_node="select_beam",
                )
        final: dict[str, Any] = {}
        step_input: Any = inputs if review is None else Command(resume=review)
        while True:
            async for chunk in app.astream(step_input, run_config, stream_mode="updates"):
                for node, update in chunk.items():
                    if not isinstance(update, dict):
                        continue
                    if resources.on_progress is not None:
                        resources.on_progress(node, update)
                    if node == "finalize":
                        final = update
            if "artifact" in final or saver is None:
                break
            pending = (await app.aget_state(run_config)).interrupts
            if not pending:
                break
            request = pending[0].value
            if resources.reviewer is None:
                raise ReviewRequired(
                    f"run {run_id!r} is paused for review of its final prompt; resume it with "
                    "resume(run_dir, review={'action': 'approve' | 'reject'} or {'action': 'edit', 'prompt': ...})",
                    request,
                )
            step_input = Command(resume=resources.reviewer(request))
    if "artifact" not in final:
        raise DRPOError(f"run {run_id!r} ended without an artifact")
    return _finish(AlignmentArtifact.model_validate(final["artifact"]), run_dir, cache, journal)


def _budget_left(config: DRPOConfig, values: dict[str, Any]) -> bool:
    tokens, _ = spent(config, {}, values.get("usage", {}))  # the cost is the artifact's, priced by model
    if config.max_tokens_budget is not None and tokens >= config.max_tokens_budget:
        return False
    artifact = values.get("artifact", {})
    cost = artifact.get("cost")
    return not (config.max_cost is not None and cost is not None and cost >= config.max_cost)


def _last_search_level(values: dict[str, Any]) -> int:
    return max((level["level"] for level in values.get("levels", [])), default=0)


def _finish(
    artifact: AlignmentArtifact,
    run_dir: Path | None,
    cache: SQLiteLLMCache | None,
    journal: ResponseJournal | None,
) -> AlignmentArtifact:
    for store in (cache, journal):
        if store is not None:
            store.close()
    if run_dir is not None:
        artifact.save(run_dir / ARTIFACT_FILE)
    return artifact


def _write_run_config(run_dir: Path, run_id: str, config: DRPOConfig, models: RunModels, memory: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "run_id": run_id,
        "config": config.to_json_dict(),
        "models": models.identities(),
        "memory": str(memory) if isinstance(memory, str | Path) else None,
    }
    (run_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


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
        _write_run_config(resources.run_dir, run_id, cfg, models, resources.memory)
    return await _run({"queries": list(queries), "run_id": run_id}, models, cfg, resources, run_id)


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
            run learns from earlier runs of the same responder model. Default: ``run_dir/chroma``
            (or in-memory without a run directory).
        checkpointer: a checkpointer or a ``postgresql://`` URL instead of the run directory's SQLite.
        callbacks: LangChain callbacks for every node and model call (tracing, logging).
        on_progress: called as ``on_progress(node_name, update)`` after every graph step.
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
    config_overrides: dict[str, Any] | None = None,
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
    try:
        record = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        config = DRPOConfig.model_validate({**record["config"], **(config_overrides or {})})
        run_id = str(record["run_id"])
    except FileNotFoundError as exc:
        raise ConfigError(f"{directory} is not a run directory (no {CONFIG_FILE})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{directory / CONFIG_FILE} is damaged: {exc}") from exc
    if checkpointer is None:
        check_checkpoint_file(directory / CHECKPOINT_FILE)
    if config_overrides:
        record["config"] = config.to_json_dict()
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    models = _stored_models(record.get("models", {}), responder, judge, rewriter, jury)
    resources = RunResources(
        run_dir=directory,
        run_id=run_id,
        memory=memory if memory is not None else record.get("memory"),
        checkpointer=checkpointer,
        icl_examples=icl_examples,
        embeddings=embeddings,
        aspects=aspects,
        callbacks=callbacks,
        on_progress=on_progress,
        reviewer=reviewer,
    )
    return await _run(None, models, config, resources, run_id, review)


def _stored_models(
    specs: dict[str, Any],
    responder: ResponderModel | None,
    judge: ChatModel | None,
    rewriter: ChatModel | None,
    jury: Sequence[ChatModel] | None,
) -> RunModels:
    """The models to resume with: those given, else those ``config.json`` names by spec string."""

    def pick(given: Any, role: str) -> Any:
        if given is not None:
            return given
        spec = specs.get(role, "")
        if not spec or spec.startswith("<"):
            raise ConfigError(
                f"the {role} was a model instance when the run started; pass it to resume() again"
            )
        return spec

    stored_jury = specs.get("jury") or []
    if jury is None and any(spec.startswith("<") for spec in stored_jury):
        raise ConfigError("the jury held model instances when the run started; pass jury= to resume() again")
    return RunModels(
        responder=pick(responder, "responder"),
        judge=pick(judge, "judge"),
        rewriter=pick(rewriter, "rewriter") if rewriter is not None or specs.get("rewriter") else None,
        jury=jury if jury is not None else stored_jury,
    )


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
