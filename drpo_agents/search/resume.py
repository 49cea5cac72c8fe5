"""Where a stopped run resumes: the state it is left in, and the edit that reopens a budget stop."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from drpo_agents.config import DRPOConfig
from drpo_agents.errors import DRPOError
from drpo_agents.json_types import JsonObject
from drpo_agents.search.budget import budget_stop


async def finished_artifact(
    app: CompiledStateGraph[Any, Any, Any, Any], run_config: RunnableConfig, config: DRPOConfig
) -> JsonObject | None:
    """The run's artifact (as stored) when it has nothing left to do, else None: it stopped part
    way (it continues from its checkpoint), or a budget stopped it and ``config``'s budget now
    lets it go on, in which case the search is reopened after its last completed level (any
    end-of-run validation runs again at the new end).

    Raises:
        DRPOError: there is no checkpoint of this run.
    """
    snapshot = await app.aget_state(run_config)
    values = snapshot.values
    if not values:
        thread = run_config.get("configurable", {}).get("thread_id")
        raise DRPOError(f"no checkpoint for run {thread!r}: nothing to resume")
    if snapshot.next or "artifact" not in values:
        return None
    artifact: JsonObject = values["artifact"]
    if not values.get("stopped_by_budget"):
        return artifact
    if budget_stop(config, artifact.get("models", {}), values.get("usage", {})) is not None:
        return artifact
    last_level = max((level["level"] for level in values.get("levels", [])), default=0)
    await app.aupdate_state(
        run_config,
        {
            "stop_reason": "",
            "stopped_by_budget": False,
            "validation": [],
            "validated_best": "",
            "level": last_level,
        },
        as_node="select_beam",
    )
    return None
