"""Realignment: the self-alignment loop as one command and one graph.

A round takes new queries and the deployed artifact, runs a warm-started search, evaluates the
candidate against the deployed artifact on held-out queries, and promotes it only if the gate
passes. Modules:
:mod:`~drpo_agents.realign.deployment` (the folder: versions, the ``current.json`` pointer,
history), :mod:`~drpo_agents.realign.inputs` (new queries and their split),
:mod:`~drpo_agents.realign.graph` (the round as a LangGraph graph) and
:mod:`~drpo_agents.realign.run` (:func:`arealign` / :func:`realign`).
"""

from drpo_agents.realign.deployment import Deployment, RoundRecord
from drpo_agents.realign.graph import PROMOTION_GATE, RealignInput, RealignState, create_realign_graph
from drpo_agents.realign.run import arealign, realign

__all__ = [
    "PROMOTION_GATE",
    "Deployment",
    "RealignInput",
    "RealignState",
    "RoundRecord",
    "arealign",
    "create_realign_graph",
    "realign",
]
