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

This module only wires; the node logic lives in ``beam``, ``tasks``, ``model_steps``,
``validation``, ``gate``, ``review`` and ``finalize``, each a function of a
:class:`~drpo_agents.search.context.SearchContext` and the state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langgraph.graph import END, START, StateGraph

from drpo_agents.agents import Judge, PromptRewriter, Responder
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import ConfigLike, as_config
from drpo_agents.datasets import load_seed_icl_examples
from drpo_agents.embeddings import EmbeddingsLike, resolve_embeddings
from drpo_agents.errors import ConfigError
from drpo_agents.infra.cache import cached_copies
from drpo_agents.infra.calls import RoleLimiter, plan_node
from drpo_agents.infra.journal import ResponseJournal, journaled_copies
from drpo_agents.memory import CritiqueMemory
from drpo_agents.memory.base import check_critique_memory
from drpo_agents.models.registry import (
    default_rewriter,
    model_identity,
    model_notes,
    resolve_model,
    with_output_limit,
)
from drpo_agents.retrieval import ICLRetriever, InMemoryICLRetriever
from drpo_agents.schemas import ICLExample
from drpo_agents.search import beam, gate, model_steps, tasks, validation
from drpo_agents.search.context import SearchContext
from drpo_agents.search.finalize import finalize
from drpo_agents.search.review import review
from drpo_agents.search.state import DRPOInput, DRPOOutput, DRPOState
from drpo_agents.structured import StructuredMethods


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
        icl_examples: the ICL set the responder retrieves from; defaults to the packaged seed set.
        embeddings: embeddings for ICL retrieval: ``"minilm"`` (the default: semantic, offline),
            ``"hashing"`` (lexical, no model), LangChain ``Embeddings`` or a Chroma embedding
            function. Examples less similar than ``config.icl_min_similarity`` are left out.
        aspects: the judge's aspect catalog; defaults to the 14 built-in aspects.
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
    icl_embeddings = resolve_embeddings(embeddings)
    if memory is not None:
        check_critique_memory(memory)
    responder_model = resolve_model(responder, "responder")
    judge_model = resolve_model(judge, "judge")
    # The rewriter defaults to the judge's model (for a string, that model built for the rewriter role).
    rewriter_model = resolve_model(rewriter if rewriter is not None else default_rewriter(judge), "rewriter")
    jury_models = [resolve_model(m, "judge") for m in jury]
    # Every role gets a reply cap (models with their own limit keep it): no call runs to the
    # end of a server's context.
    limits = cfg.role_max_tokens
    responder_model = with_output_limit(responder_model, limits["responder"])
    judge_model = with_output_limit(judge_model, limits["judge"])
    rewriter_model = with_output_limit(rewriter_model, limits["rewriter"])
    jury_models = [with_output_limit(m, limits["judge"]) for m in jury_models]
    if not isinstance(judge_model, BaseChatModel) or not isinstance(rewriter_model, BaseChatModel):
        raise TypeError("the judge and the rewriter must be chat models")
    if not all(isinstance(m, BaseChatModel) for m in jury_models):
        raise TypeError("every juror must be a chat model")
    if jury_models and cfg.jury_size not in (1, len(jury_models) + 1):
        raise ConfigError(
            f"jury_size={cfg.jury_size} but {len(jury_models) + 1} judges were given (the judge and "
            f"{len(jury_models)} jurors); leave jury_size at 1 or make them agree"
        )
    # The structured-output methods each endpoint accepts, discovered once per graph (see
    # drpo_agents.structured); the ICL stage shares it.
    methods = StructuredMethods()
    examples = list(icl_examples) if icl_examples is not None else load_seed_icl_examples()
    identities = {
        "responder": model_identity(responder_model),
        "judge": model_identity(judge_model),
        "rewriter": model_identity(rewriter_model),
    }
    if jury_models:
        identities["jury"] = ", ".join(dict.fromkeys(model_identity(m) for m in jury_models))
    notes = model_notes({"responder": responder_model, "judge": judge_model, "rewriter": rewriter_model})
    selection_model = judge_model
    if cache is not None and cfg.cache != "off":
        selection_model = judge_model.model_copy(update={"cache": cache})
        if cfg.cache == "all":
            responder_model, judge_model, rewriter_model, *jury_models = cached_copies(
                [responder_model, judge_model, rewriter_model, *jury_models], cache
            )
    if journal is not None:
        responder_model, judge_model, rewriter_model, selection_model, *jury_models = journaled_copies(
            [responder_model, judge_model, rewriter_model, selection_model, *jury_models], journal
        )
    ctx = SearchContext(
        responder=Responder(
            responder_model,
            retriever=None,
            k=cfg.icl_k,
            mode=cfg.responder_mode,
            prompts_dir=cfg.prompts_dir,
        ),
        judge=Judge(
            judge_model,
            catalog=aspects,
            method=cfg.structured_output_for("judge"),
            max_retries=cfg.max_parse_retries,
            prompts_dir=cfg.prompts_dir,
            selection_model=selection_model,
            jury=[m for m in jury_models if isinstance(m, BaseChatModel)],
            jury_size=cfg.jury_size,
            methods=methods,
        ),
        rewriter=PromptRewriter(
            rewriter_model,
            max_bullets=cfg.max_bullets,
            max_new_bullets=cfg.max_new_bullets,
            max_prompt_tokens=cfg.max_prompt_tokens,
            method=cfg.structured_output_for("rewriter"),
            max_retries=cfg.max_parse_retries,
            prompts_dir=cfg.prompts_dir,
            methods=methods,
        ),
        config=cfg,
        icl_examples=examples,
        models=identities,
        notes=notes,
        memory=memory if cfg.critique_memory else None,
        retriever_factory=icl_retriever_factory
        or (lambda shots: InMemoryICLRetriever(shots, icl_embeddings, min_similarity=cfg.icl_min_similarity)),
        methods=methods,
    )

    graph = StateGraph(DRPOState, input_schema=DRPOInput, output_schema=DRPOOutput)
    route_level_work = partial(tasks.route_level_work, ctx)
    graph.add_node("prepare", partial(beam.prepare, ctx))
    limiter = (
        RoleLimiter({str(role): n for role, n in cfg.role_concurrency.items()})
        if cfg.role_concurrency
        else None
    )
    graph.add_node("rewrite", plan_node("rewrite", partial(model_steps.plan_rewrite, ctx), limiter))
    graph.add_node(
        "select_aspects", plan_node("select_aspects", partial(model_steps.plan_select_aspects, ctx), limiter)
    )
    graph.add_node("dispatch_evaluations", beam.dispatch_evaluations)
    graph.add_node("evaluate", plan_node("evaluate", partial(model_steps.plan_evaluate, ctx), limiter))
    graph.add_node("select_beam", partial(beam.select_beam, ctx))
    graph.add_node("next_level", partial(beam.next_level, ctx))
    graph.add_node("finalize", partial(finalize, ctx))
    graph.add_node("remember", beam.remember_node(ctx))  # a dead end: nothing waits for it
    level_work = ["remember", "rewrite", "select_aspects", "dispatch_evaluations", "finalize"]
    if cfg.review:
        graph.add_node("review", partial(review, cfg))
        graph.add_edge("review", "finalize")
        level_work.append("review")
    if tasks.validates_at_end(cfg):
        # After the search: re-rank the final beam and the initial prompt on held-out queries.
        graph.add_node(
            "select_validation_aspects",
            plan_node("select_validation_aspects", partial(model_steps.plan_select_aspects, ctx), limiter),
        )
        graph.add_node("dispatch_validation", validation.dispatch_validation)
        graph.add_node("validate", plan_node("validate", partial(model_steps.plan_evaluate, ctx), limiter))
        graph.add_node("rank_validation", partial(validation.rank_validation, ctx))
        graph.add_edge("select_validation_aspects", "dispatch_validation")
        graph.add_conditional_edges(
            "dispatch_validation", partial(validation.route_validation, ctx), ["validate"]
        )
        graph.add_edge("validate", "rank_validation")
        graph.add_edge("rank_validation", "review" if cfg.review else "finalize")
        level_work += ["select_validation_aspects", "dispatch_validation"]
    graph.add_edge(START, "prepare")
    if cfg.icl_iters > 0:
        # DRPO's first stage: optimize the ICL answers, then search prompts with them (a
        # subgraph, so it is checkpointed and resumable on its own).
        from drpo_agents.search.icl_stage import ICLStageConfig, create_icl_stage_graph

        icl_stage = create_icl_stage_graph(
            judge_model,
            rewriter_model,
            config=ICLStageConfig.from_drpo_config(cfg, num_iters=cfg.icl_iters),
            aspects=aspects,
            methods=methods,
        ).compile(name="drpo_icl_stage")
        graph.add_node("icl_stage", icl_stage)
        graph.add_edge("prepare", "icl_stage")
        graph.add_conditional_edges("icl_stage", route_level_work, level_work)
    else:
        graph.add_conditional_edges("prepare", route_level_work, level_work)
    graph.add_edge("rewrite", "dispatch_evaluations")
    graph.add_edge("select_aspects", "dispatch_evaluations")
    graph.add_conditional_edges(
        "dispatch_evaluations", partial(tasks.route_evaluations, ctx), ["evaluate", "select_beam"]
    )
    graph.add_edge("evaluate", "select_beam")
    if cfg.acceptance_gate:
        # After each level: validate the incumbent and the new best, then accept or reject.
        graph.add_node("validate", plan_node("validate", partial(model_steps.plan_evaluate, ctx), limiter))
        graph.add_node("gate", partial(gate.gate, ctx))
        graph.add_conditional_edges(
            "select_beam", partial(gate.route_gate, ctx), ["validate", "gate", "next_level"]
        )
        graph.add_edge("validate", "gate")
        graph.add_edge("gate", "next_level")
    else:
        graph.add_edge("select_beam", "next_level")
    graph.add_conditional_edges("next_level", route_level_work, level_work)
    graph.add_edge("finalize", END)
    return graph
