"""How a run chooses the prompt it returns: one policy object per way, chosen from the config once.

- :class:`SearchBest` (the reference DRPO): the search's own best;
- :class:`EndValidation` (``validation_size`` without the gate): the final beam and the initial
  prompt are re-ranked on held-out queries after the search;
- :class:`AcceptanceGate` (``acceptance_gate``): after every level, the search's new best replaces
  the incumbent only on a clear validation gain.

A policy owns its graph nodes and edges, the extra queries it needs aspects for at level 0, the
state it plants at the start, the choice of the final prompt and the artifact's validation rows;
the graph factory, the routers, ``prepare``, ``finalize`` and the estimate ask it, and
:func:`selection_policy` is the one place that reads which one the config asks for.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph
from langgraph.types import Send

from drpo_agents.config import DRPOConfig
from drpo_agents.infra.calls import RoleLimiter, plan_node
from drpo_agents.search import gate, model_steps, validation
from drpo_agents.search.beam import validation_level
from drpo_agents.search.context import SearchContext, bound
from drpo_agents.search.records import ROOT_ID, Query, ValidationRow
from drpo_agents.search.state import DRPOState, DRPOUpdate
from drpo_agents.search.tasks import aspect_sends


class SearchBest:
    """The reference DRPO selection: the search's best prompt is the result; no validation."""

    validates_each_level = False
    validates_at_end = False
    search_end_nodes: tuple[str, ...] = ()

    def initial_state(self) -> DRPOUpdate:
        """State fields this policy plants when the run starts."""
        return {}

    def level_zero_queries(self, state: DRPOState) -> list[Query]:
        """Queries besides level 0's batch whose aspects must be selected at level 0."""
        return []

    def wire(
        self, graph: StateGraph[Any, Any, Any, Any], ctx: SearchContext, limiter: RoleLimiter | None
    ) -> None:
        """Add this policy's nodes and its edges from ``select_beam`` (and to the end of the run)."""
        graph.add_edge("select_beam", "next_level")

    def route_search_end(self, ctx: SearchContext, state: DRPOState) -> list[Send | str]:
        """Where the run goes once the search has stopped."""
        return [after_search(ctx)]

    def chosen(self, state: DRPOState) -> str:
        """The candidate the run returns (before any human review)."""
        return state["beam"][0]

    def validation_rows(self, state: DRPOState) -> list[ValidationRow]:
        """The artifact's validation rows."""
        return []


class EndValidation(SearchBest):
    """Re-rank the final beam and the initial prompt on held-out queries after the search."""

    validates_at_end = True
    search_end_nodes = ("select_validation_aspects", "dispatch_validation")

    def wire(
        self, graph: StateGraph[Any, Any, Any, Any], ctx: SearchContext, limiter: RoleLimiter | None
    ) -> None:
        super().wire(graph, ctx, limiter)
        select = plan_node("select_validation_aspects", bound(ctx, model_steps.plan_select_aspects), limiter)
        graph.add_node("select_validation_aspects", select)
        graph.add_node("dispatch_validation", validation.dispatch_validation)
        graph.add_node("validate", plan_node("validate", bound(ctx, model_steps.plan_evaluate), limiter))
        graph.add_node("rank_validation", bound(ctx, validation.rank_validation))
        graph.add_edge("select_validation_aspects", "dispatch_validation")
        graph.add_conditional_edges(
            "dispatch_validation", bound(ctx, validation.route_validation), ["validate"]
        )
        graph.add_edge("validate", "rank_validation")
        graph.add_edge("rank_validation", after_search(ctx))

    def route_search_end(self, ctx: SearchContext, state: DRPOState) -> list[Send | str]:
        if not state.get("validation_bank"):
            return super().route_search_end(ctx, state)
        ctx.recall_methods(state)
        level = validation_level(state)
        sends = aspect_sends("select_validation_aspects", state, state["validation_bank"], level)
        return [*sends] or ["dispatch_validation"]

    def chosen(self, state: DRPOState) -> str:
        return state.get("validated_best") or state["beam"][0]

    def validation_rows(self, state: DRPOState) -> list[ValidationRow]:
        return list(state.get("validation", []))


class AcceptanceGate(SearchBest):
    """After every level, the new best replaces the incumbent only on a clear validation gain."""

    validates_each_level = True

    def initial_state(self) -> DRPOUpdate:
        return {"incumbent": ROOT_ID}  # the initial prompt is the first incumbent

    def level_zero_queries(self, state: DRPOState) -> list[Query]:
        return list(state["validation_bank"]) if state["level"] == 0 else []  # validated from level 0 on

    def wire(
        self, graph: StateGraph[Any, Any, Any, Any], ctx: SearchContext, limiter: RoleLimiter | None
    ) -> None:
        graph.add_node("validate", plan_node("validate", bound(ctx, model_steps.plan_evaluate), limiter))
        graph.add_node("gate", bound(ctx, gate.gate))
        graph.add_conditional_edges(
            "select_beam", bound(ctx, gate.route_gate), ["validate", "gate", "next_level"]
        )
        graph.add_edge("validate", "gate")
        graph.add_edge("gate", "next_level")

    def chosen(self, state: DRPOState) -> str:
        return state.get("incumbent") or ROOT_ID

    def validation_rows(self, state: DRPOState) -> list[ValidationRow]:
        return gate.gate_validation_rows(state)


def selection_policy(config: DRPOConfig) -> SearchBest:
    """The policy ``config`` asks for: the acceptance gate, else end-of-run validation when
    queries are held out, else the search's best."""
    if config.acceptance_gate:
        return AcceptanceGate()
    if config.validation_size or config.red_team_validation_size:
        return EndValidation()
    return SearchBest()


def after_search(ctx: SearchContext) -> str:
    """The node after the search and any validation: the human review if configured, else ``finalize``."""
    return "review" if ctx.config.review else "finalize"
