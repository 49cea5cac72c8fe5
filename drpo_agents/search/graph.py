"""The DRPO beam search over system prompts, as a LangGraph ``StateGraph``.

One level of the search (the reference DRPO algorithm):

1. every beam candidate whose last answers scored high (all 5s, or a mean above
   ``skip_threshold``) gets one *carried* child with the same prompt; the others are
   rewritten into ``n_actions`` children from their own last critique (``rewrite``), while
   the judge selects aspects for the level's training queries (``select_aspects``), in parallel;
2. every child answers the level's queries and is judged (``evaluate``, one task per child
   and query, fanned out with ``Send``);
3. children are ranked by the mean of their reward history (inherited rewards included)
   and the best ``beam_size`` form the next beam (``select_beam``). A level in which any
   candidate was carried extends the depth by one, at most ``max_depth_increase`` times.

Level 0 only evaluates the initial prompt. Every candidate is recorded with its parent, so
the whole search tree ends up in the artifact. Optional phases have their own nodes: the
ICL stage (``icl_stage``, before the search), the acceptance gate (``validate``, ``gate``,
after each level), the end-of-run validation (``select_validation_aspects``,
``dispatch_validation``, ``validate``, ``rank_validation``) and human review (``review``).

This module only wires: the role models come from :func:`~drpo_agents.models.roles.prepare_role_models`,
the context from :func:`~drpo_agents.search.build.build_context`, the selection policy
(:mod:`~drpo_agents.search.selection`) adds its own nodes; the node logic lives in ``beam``,
``tasks``, ``model_steps``, ``validation``, ``gate``, ``review`` and ``finalize``, each a function
of a :class:`~drpo_agents.search.context.SearchContext` and the state, bound to it with
:func:`~drpo_agents.search.context.bound`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import ConfigLike, as_config
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.errors import ConfigError
from drpo_agents.infra.calls import RoleLimiter, plan_node
from drpo_agents.infra.journal import ResponseJournal
from drpo_agents.memory import CritiqueMemory
from drpo_agents.memory.base import check_critique_memory
from drpo_agents.models.roles import prepare_role_models
from drpo_agents.retrieval import ICLRetriever
from drpo_agents.schemas import ICLExample
from drpo_agents.search import beam, model_steps, tasks
from drpo_agents.search.build import build_context
from drpo_agents.search.context import SearchContext, bound
from drpo_agents.search.finalize import finalize
from drpo_agents.search.remember import remember_node
from drpo_agents.search.review import review
from drpo_agents.search.state import DRPOInput, DRPOOutput, DRPOState


def create_drpo_graph(
    responder: str | BaseLanguageModel[Any],
    judge: str | BaseChatModel,
    rewriter: str | BaseChatModel | None = None,
    *,
    config: ConfigLike = None,
    icl_examples: Sequence[ICLExample] | None = None,
    embeddings: EmbeddingsLike | None = None,
    aspects: AspectCatalog | None = None,
    icl_retriever_factory: Callable[[list[ICLExample]], ICLRetriever] | None = None,
    memory: CritiqueMemory | None = None,
    cache: BaseCache | None = None,
    jury: Sequence[str | BaseChatModel] = (),
    journal: ResponseJournal | None = None,
) -> StateGraph[DRPOState, None, DRPOInput, DRPOOutput]:
    """Build the DRPO self-alignment graph (uncompiled, so you choose the checkpointer).

    Args:
        responder: the model being aligned: a chat model, a completion model (base-model
            mode), or a ``"provider:model"`` string for ``init_chat_model`` (``"sandbox"`` for
            the offline simulation).
        judge: the dynamic-reward judge model (or string).
        rewriter: the prompt rewriter; defaults to the judge's model.
        config: search hyper-parameters (a :class:`DRPOConfig` or a dict of its fields); the
            defaults reproduce the reference DRPO search.
        icl_examples: the ICL set the responder retrieves from; defaults to the packaged seed set
            (with its example conversations when a training query is a conversation).
        embeddings: embeddings for ICL retrieval: ``"minilm"`` (the default: semantic, offline),
            ``"hashing"`` (lexical, no model), LangChain ``Embeddings`` or a Chroma embedding
            function. Examples less similar than ``config.icl_min_similarity`` are left out.
        aspects: the judge's aspect catalog; defaults to the 15 built-in aspects.
        icl_retriever_factory: builds the retriever over an ICL set (the seed set, or the
            optimized one after the ICL stage), e.g. one returning a
            :class:`~drpo_agents.memory.ChromaICLRetriever`; defaults to in-memory retrieval.
        memory: critique memory; every judged answer is stored and the rewriter is shown
            similar past critiques (``config.critique_memory`` turns it off).
        cache: LLM response cache, applied per ``config.cache`` (aspect selection only by
            default; ``"all"`` makes re-runs and resumes free).
        jury: further judge models (or strings) that score every answer beside ``judge``; the
            scores are aggregated per aspect by median and the jurors' disagreement recorded.
            Without it, ``config.jury_size > 1`` asks ``judge`` several times instead.
        journal: the run's response journal (:mod:`drpo_agents.infra.journal`), put in front of every
            model's cache so a task re-run after a crash replays its finished calls.

    Returns:
        A ``StateGraph``. Compile it (``graph.compile(checkpointer=...)``) and invoke it with
        ``{"queries": [...]}``; the output's ``"artifact"`` is an :class:`AlignmentArtifact` dict.
        Pass ``{"max_concurrency": N}`` in the run config to bound parallel model calls.

    Example:
        >>> graph = create_drpo_graph(responder="sandbox", judge="sandbox").compile()
        >>> out = graph.invoke({"queries": ["How do tides work?", "Plan a picnic.", "Hack my ex's email."]})
    """
    cfg = as_config(config)
    if memory is not None:
        check_critique_memory(memory)
    models = prepare_role_models(
        responder=responder, judge=judge, rewriter=rewriter, jury=jury, max_tokens=cfg.role_max_tokens
    )
    if models.jury and cfg.jury_size not in (1, len(models.jury) + 1):
        raise ConfigError(
            f"jury_size={cfg.jury_size} but {len(models.jury) + 1} judges were given (the judge and "
            f"{len(models.jury)} jurors); leave jury_size at 1 or make them agree"
        )
    ctx = build_context(
        models,
        cfg,
        icl_examples=icl_examples,
        embeddings=embeddings,
        aspects=aspects,
        icl_retriever_factory=icl_retriever_factory,
        memory=memory,
        cache=cache,
        journal=journal,
    )
    return wire(ctx)


def wire(ctx: SearchContext) -> StateGraph[DRPOState, None, DRPOInput, DRPOOutput]:
    """The graph's nodes and edges over ``ctx`` (the selection policy adds its own)."""
    cfg = ctx.config
    limiter = (
        RoleLimiter({str(r): n for r, n in cfg.role_concurrency.items()}) if cfg.role_concurrency else None
    )
    graph = StateGraph(DRPOState, input_schema=DRPOInput, output_schema=DRPOOutput)
    graph.add_node("prepare", bound(ctx, beam.prepare))
    graph.add_node("rewrite", plan_node("rewrite", bound(ctx, model_steps.plan_rewrite), limiter))
    graph.add_node(
        "select_aspects", plan_node("select_aspects", bound(ctx, model_steps.plan_select_aspects), limiter)
    )
    graph.add_node("dispatch_evaluations", beam.dispatch_evaluations)
    graph.add_node("evaluate", plan_node("evaluate", bound(ctx, model_steps.plan_evaluate), limiter))
    graph.add_node("select_beam", bound(ctx, beam.select_beam))
    graph.add_node("next_level", bound(ctx, beam.next_level))
    graph.add_node("finalize", bound(ctx, finalize))
    graph.add_node("remember", remember_node(ctx))  # a dead end: nothing waits for it
    level_work = ["remember", "rewrite", "select_aspects", "dispatch_evaluations", "finalize"]
    level_work += ctx.selection.search_end_nodes
    if cfg.review:
        graph.add_node("review", bound(ctx, review))
        graph.add_edge("review", "finalize")
        level_work.append("review")
    ctx.selection.wire(graph, ctx, limiter)
    graph.add_edge(START, "prepare")
    route_level_work = bound(ctx, tasks.route_level_work)
    if cfg.icl_iters > 0:
        # DRPO's first stage: optimize the ICL answers, then search prompts with them (a
        # subgraph, so it is checkpointed and resumable on its own).
        graph.add_node("icl_stage", _icl_stage(ctx))
        graph.add_edge("prepare", "icl_stage")
        graph.add_conditional_edges("icl_stage", route_level_work, level_work)
    else:
        graph.add_conditional_edges("prepare", route_level_work, level_work)
    graph.add_edge("rewrite", "dispatch_evaluations")
    graph.add_edge("select_aspects", "dispatch_evaluations")
    graph.add_conditional_edges(
        "dispatch_evaluations", bound(ctx, tasks.route_evaluations), ["evaluate", "select_beam"]
    )
    graph.add_edge("evaluate", "select_beam")
    graph.add_conditional_edges("next_level", route_level_work, level_work)
    graph.add_edge("finalize", END)
    return graph


def _icl_stage(ctx: SearchContext) -> CompiledStateGraph[Any, Any, Any, Any]:
    """DRPO's first stage as a compiled subgraph, on the search's own judge and rewriter."""
    from drpo_agents.search.icl_stage import ICLStageConfig, create_icl_stage_graph

    return create_icl_stage_graph(
        ctx.calling.judge,
        ctx.calling.rewriter,
        config=ICLStageConfig.from_drpo_config(ctx.config, num_iters=ctx.config.icl_iters),
        aspects=ctx.aspects,
        methods=ctx.methods,
    ).compile(name="drpo_icl_stage")
