"""What every search node needs: the agents, the config, the memory, and small shared lookups."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.types import Send

from drpo_agents.agents import Judge, PromptRewriter, Responder
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import DRPOConfig
from drpo_agents.infra.calls import RoleLimiter
from drpo_agents.memory import CritiqueMemory
from drpo_agents.memory.distill import Rule
from drpo_agents.models.roles import RoleModels
from drpo_agents.retrieval import ICLRetriever
from drpo_agents.rewards import mean
from drpo_agents.schemas import ICLExample
from drpo_agents.search.records import Query, ValidationRow
from drpo_agents.search.state import DRPOState, DRPOUpdate
from drpo_agents.structured import METHOD_STEPS, StructuredMethods

P = ParamSpec("P")
R = TypeVar("R")


class Selection(Protocol):
    """What the nodes ask the run's selection policy (:mod:`drpo_agents.search.selection`)."""

    validates_each_level: bool
    validates_at_end: bool
    search_end_nodes: tuple[str, ...]

    def wire(
        self, graph: StateGraph[Any, Any, Any, Any], ctx: SearchContext, limiter: RoleLimiter | None
    ) -> None: ...

    def initial_state(self) -> DRPOUpdate: ...

    def level_zero_queries(self, state: DRPOState) -> list[Query]: ...

    def route_search_end(self, ctx: SearchContext, state: DRPOState) -> list[Send | str]: ...

    def chosen(self, state: DRPOState) -> str: ...

    def validation_rows(self, state: DRPOState) -> list[ValidationRow]: ...


@dataclass(frozen=True)
class SearchContext:
    """The agents plus the config, shared (read-only, bar caches) by the node functions."""

    responder: Responder
    judge: Judge
    rewriter: PromptRewriter
    config: DRPOConfig
    icl_examples: list[ICLExample] | None  # None: the packaged seeds for the run's queries
    models: dict[str, str]  # role -> model identity
    notes: list[str]
    memory: CritiqueMemory | None  # None when config.critique_memory is off
    retriever_factory: Callable[[list[ICLExample]], ICLRetriever]
    methods: StructuredMethods  # the methods each endpoint accepts, shared with the agents
    selection: Selection  # how the run chooses the prompt it returns
    aspects: AspectCatalog | None  # the judge's catalog (None: the built-in one), for the ICL stage too
    calling: RoleModels  # the models the agents call (behind the run's cache and journal)
    retrievers: dict[str, ICLRetriever] = field(default_factory=dict)  # one per ICL set
    rule_books: dict[str, list[Rule]] = field(default_factory=dict)  # per run: distilled once

    def agent_of(self, role: str) -> Judge | PromptRewriter:
        return self.judge if role == "judge" else self.rewriter

    def methods_used(self, *roles: str) -> dict[str, str]:
        """The structured-output method of each role, as far as known (forced, or discovered)."""
        used: dict[str, str] = {}
        for role in roles:
            agent = self.agent_of(role)
            label = agent.method if agent.method != "auto" else self.methods.label(agent.model)
            if label:
                used[role] = label
        return used

    def recall_methods(self, state: DRPOState) -> None:
        """Seed the method memory from the checkpoint, so a resumed run does not rediscover what
        the run found before (tasks restored mid-level may still rediscover: harmless)."""
        for role, label in (state.get("structured_methods") or {}).items():
            if role not in ("judge", "rewriter"):
                continue
            agent = self.agent_of(role)
            if agent.method == "auto" and label in METHOD_STEPS and self.methods.get(agent.model) is None:
                self.methods.remember(agent.model, label)

    def retriever(self, examples: list[ICLExample]) -> ICLRetriever:
        """The retriever over ``examples``, built once per distinct ICL set."""
        key = json.dumps([[e.query, e.answer] for e in examples])
        if key not in self.retrievers:
            self.retrievers[key] = self.retriever_factory(examples)
        return self.retrievers[key]


def bound(ctx: SearchContext, step: Callable[Concatenate[SearchContext, P], R]) -> Callable[P, R]:
    """``step`` with the search context as its first argument: a node, router or call plan of the
    graph, typed (unlike ``functools.partial``), named after ``step`` in traces."""

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return step(ctx, *args, **kwargs)

    run.__name__ = run.__qualname__ = step.__name__
    return run


def current_examples(state: DRPOState) -> list[ICLExample]:
    """The ICL set in force: after DRPO's first stage the optimized examples replace the seed ones."""
    raw = state.get("optimized_icl_examples") or state.get("icl_examples") or []
    return [ICLExample.model_validate(e) for e in raw]


def std(values: Sequence[float]) -> float:
    """Population standard deviation (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    center = mean(values)
    return float((sum((v - center) ** 2 for v in values) / len(values)) ** 0.5)


def tagged(config: RunnableConfig, task: Mapping[str, object], *keys: str) -> RunnableConfig:
    """Forward the node's config with the task's ids (and its run id) as trace metadata."""
    ids = {f"drpo_{k}": task[k] for k in keys}
    if "run_id" in task:  # set by optimize() too, but not when the graph is used directly
        ids["drpo_run_id"] = task["run_id"]
    metadata = {**config.get("metadata", {}), **ids}
    return {**config, "metadata": metadata}
