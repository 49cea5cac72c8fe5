"""Deployable DRPO graph for LangGraph Server / ``langgraph dev`` (see langgraph.json).

Models come from the environment so one deployment can align any model:
``DRPO_RESPONDER``, ``DRPO_JUDGE``, ``DRPO_REWRITER`` ("provider:model" strings; default
"sandbox", the offline simulation) and ``DRPO_CONFIG`` (a JSON object of DRPOConfig fields).
Compiled without a checkpointer: the server provides its own persistence.
"""

from __future__ import annotations

import json
import os

from drpo_agents import DRPOConfig, create_drpo_graph

_config = DRPOConfig.model_validate(json.loads(os.environ.get("DRPO_CONFIG", "{}")))

graph = create_drpo_graph(
    os.environ.get("DRPO_RESPONDER", "sandbox"),
    os.environ.get("DRPO_JUDGE", "sandbox"),
    os.environ.get("DRPO_REWRITER") or None,
    config=_config,
).compile(name="drpo")
