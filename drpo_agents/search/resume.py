"""Where a stopped run resumes: the state it is left in, and the edit that reopens a finished search
(a budget stop that a larger budget lifts, or levels added with ``extend_depth``)."""

from __future__ import annotations

from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from drpo_agents.config import DRPOConfig
from drpo_agents.errors import DRPOError, ResumeRefused
from drpo_agents.json_types import JsonObject
from drpo_agents.search.beam import level_batch
from drpo_agents.search.budget import budget_stop
from drpo_agents.search.state import DRPOState


async def finished_artifact(
    app: CompiledStateGraph[Any, Any, Any, Any],
    run_config: RunnableConfig,
    config: DRPOConfig,
    extend_depth: int = 0,
) -> JsonObject | None:
    """The run's artifact (as stored) when it has nothing left to do, else None: it stopped part
    way (it continues from its checkpoint), or its search is reopened after its last completed
    level because a budget stopped it and ``config``'s budget now lets it go on, or because
    ``extend_depth`` levels are added (any end-of-run validation and review run again at the new
    end).

    Raises:
        DRPOError: there is no checkpoint of this run.
        ResumeRefused: ``extend_depth`` for a run that has not finished, whose training queries are
            all used, or whose budget is spent.
    """
    snapshot = await app.aget_state(run_config)
    values = cast(DRPOState, snapshot.values)
    thread = run_config.get("configurable", {}).get("thread_id")
    if not values:
        raise DRPOError(f"no checkpoint for run {thread!r}: nothing to resume")
    if snapshot.next or "artifact" not in values:
        if extend_depth:
            raise ResumeRefused(
                f"run {thread!r} has not finished: resume it without extending it first, then extend its depth"
            )
        return None
    artifact = values["artifact"]
    spent_out = budget_stop(config, artifact.get("models", {}), values.get("usage", {}))
    last_level = max((level["level"] for level in values.get("levels", [])), default=0)
    if extend_depth:
        _check_extensible(values, last_level, config, spent_out)
    elif not values.get("stopped_by_budget") or spent_out is not None:
        return artifact
    await app.aupdate_state(
        run_config,
        {
            "stop_reason": "",
            "stopped_by_budget": False,
            "validation": [],
            "validated_best": "",
            "level": last_level,
            "depth_limit": values["depth_limit"] + extend_depth,
        },
        as_node="select_beam",
    )
    return None


def _check_extensible(values: DRPOState, last_level: int, config: DRPOConfig, spent_out: str | None) -> None:
    """Refuse a depth extension that could not add a level, saying why and what to do instead."""
    if not level_batch(values, last_level + 1, config.queries_per_step):
        used = len(values["query_bank"])
        raise ResumeRefused(
            f"the run used all {used} of its training queries, so no level can be added; start a "
            "new run from this one with more queries (drpo optimize --from RUN_DIR --queries FILE)"
        )
    if spent_out is not None:
        raise ResumeRefused(f"the run's {spent_out}: raise max_tokens_budget or max_cost to extend it")
