"""Deployable realignment graph for LangGraph Server / ``langgraph dev`` (see langgraph.json).

One run is one round: ``{"deploy_dir": ..., "queries": ...}`` in, the round's record out
(``record``). Schedule it with LangGraph Server crons, e.g.
``client.crons.create("realign", schedule="0 3 * * *", input={...})``. Models and settings come
from the environment, as for ``graphs/drpo.py``: ``DRPO_RESPONDER``, ``DRPO_JUDGE``,
``DRPO_REWRITER``, ``DRPO_EVALUATION_JUDGE`` ("provider:model" strings; default "sandbox", the
offline simulation), ``DRPO_CONFIG`` (a JSON object of DRPOConfig fields), ``DRPO_GATE`` (a JSON
object of GateThresholds fields; default: promote only on a gain beyond the noise) and
``DRPO_SHARED_MEMORY=1`` (rounds recall earlier rounds' critiques). Compiled
without a checkpointer: the server provides its own; the round's search keeps its own checkpoints
in the deployment folder, so a round the server lost is resumed by the next run.
"""

from __future__ import annotations

import json
import os

from drpo_agents import DRPOConfig
from drpo_agents.evaluation import GateThresholds
from drpo_agents.realign import PROMOTION_GATE, create_realign_graph

_gate = os.environ.get("DRPO_GATE")

graph = create_realign_graph(
    os.environ.get("DRPO_RESPONDER", "sandbox"),
    os.environ.get("DRPO_JUDGE", "sandbox"),
    os.environ.get("DRPO_REWRITER") or None,
    evaluation_judge=os.environ.get("DRPO_EVALUATION_JUDGE") or None,
    config=DRPOConfig.model_validate(json.loads(os.environ.get("DRPO_CONFIG", "{}"))),
    gate=GateThresholds.model_validate(json.loads(_gate)) if _gate else PROMOTION_GATE,
    shared_memory=os.environ.get("DRPO_SHARED_MEMORY") == "1",
).compile(name="realign")
