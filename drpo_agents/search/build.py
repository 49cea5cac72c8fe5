"""The search's context, built once per graph: the agents on the role models (behind the run's LLM
cache and response journal), the ICL retriever, the critique memory and the selection policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel

from drpo_agents.agents import Judge, PromptRewriter, Responder
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import DRPOConfig
from drpo_agents.embeddings import EmbeddingsLike, resolve_embeddings
from drpo_agents.infra.cache import cached_copies
from drpo_agents.infra.journal import ResponseJournal, journaled_copies
from drpo_agents.memory import CritiqueMemory
from drpo_agents.models.roles import RoleModels
from drpo_agents.retrieval import ICLRetriever, InMemoryICLRetriever
from drpo_agents.schemas import ICLExample
from drpo_agents.search.context import SearchContext
from drpo_agents.search.selection import selection_policy
from drpo_agents.structured import StructuredMethods

RetrieverFactory = Callable[[list[ICLExample]], ICLRetriever]


def build_context(
    models: RoleModels,
    config: DRPOConfig,
    *,
    icl_examples: Sequence[ICLExample] | None = None,
    embeddings: EmbeddingsLike | None = None,
    aspects: AspectCatalog | None = None,
    icl_retriever_factory: RetrieverFactory | None = None,
    memory: CritiqueMemory | None = None,
    cache: BaseCache | None = None,
    journal: ResponseJournal | None = None,
) -> SearchContext:
    """The :class:`SearchContext` every node of one graph shares (see
    :func:`~drpo_agents.search.graph.create_drpo_graph` for the arguments)."""
    identities, notes = models.identities(), models.notes()  # of the models, not of their cached copies
    calling = _calling_models(models, config, cache, journal)
    methods = StructuredMethods()  # what each endpoint accepts, discovered once per graph
    icl_embeddings = resolve_embeddings(embeddings)
    assert calling.responder is not None and calling.rewriter is not None  # a search has both roles
    return SearchContext(
        responder=Responder(
            calling.responder,
            retriever=None,
            k=config.icl_k,
            mode=config.responder_mode,
            prompts_dir=config.prompts_dir,
        ),
        judge=Judge(
            calling.judge,
            catalog=aspects,
            method=config.structured_output_for("judge"),
            max_retries=config.max_parse_retries,
            prompts_dir=config.prompts_dir,
            selection_model=_selection_model(calling, models, config, cache, journal),
            jury=calling.jury,
            jury_size=config.jury_size,
            methods=methods,
        ),
        rewriter=PromptRewriter(
            calling.rewriter,
            max_bullets=config.max_bullets,
            max_new_bullets=config.max_new_bullets,
            max_prompt_tokens=config.max_prompt_tokens,
            method=config.structured_output_for("rewriter"),
            max_retries=config.max_parse_retries,
            prompts_dir=config.prompts_dir,
            methods=methods,
        ),
        config=config,
        icl_examples=list(icl_examples) if icl_examples is not None else None,
        models=identities,
        notes=notes,
        memory=memory if config.critique_memory else None,
        retriever_factory=icl_retriever_factory
        or (
            lambda shots: InMemoryICLRetriever(
                shots, icl_embeddings, min_similarity=config.icl_min_similarity
            )
        ),
        methods=methods,
        selection=selection_policy(config),
        aspects=aspects,
        calling=calling,
    )


def _calling_models(
    models: RoleModels, config: DRPOConfig, cache: BaseCache | None, journal: ResponseJournal | None
) -> RoleModels:
    """The models the agents call: behind the LLM cache (``config.cache == "all"``) and the
    journal, so a re-run task replays its finished calls."""
    roles: list[Any] = [models.responder, models.judge, models.rewriter, *models.jury]
    if cache is not None and config.cache == "all":
        roles = cached_copies(roles, cache)
    if journal is not None:
        roles = journaled_copies(roles, journal)
    responder, judge, rewriter, *jury = roles
    return replace(models, responder=responder, judge=judge, rewriter=rewriter, jury=jury)


def _selection_model(
    calling: RoleModels,
    models: RoleModels,
    config: DRPOConfig,
    cache: BaseCache | None,
    journal: ResponseJournal | None,
) -> BaseChatModel:
    """The judge for aspect selections: cached unless ``config.cache == "off"`` (a query's aspects
    are the same whatever the prompt), and journaled."""
    if cache is None or config.cache == "off":
        return calling.judge
    if config.cache == "all":
        return calling.judge  # already behind the cache
    selection: BaseChatModel = models.judge.model_copy(update={"cache": cache})
    return journaled_copies([selection], journal)[0] if journal is not None else selection
