"""Deployable DRPO graph for LangGraph Server / ``langgraph dev`` (see langgraph.json).

Models, settings and stores come from the environment (``DRPO_RESPONDER``, ``DRPO_JUDGE``,
``DRPO_REWRITER``, ``DRPO_CONFIG``, ``DRPO_MEMORY``, ``DRPO_SERVER_DIR``, and the Chroma token
``DRPO_CHROMA_TOKEN``): see :mod:`drpo_agents.serving` and docs/DEPLOYMENT.md. Compiled without a
checkpointer: the server provides its own persistence.
"""

from __future__ import annotations

from drpo_agents.serving import create_server_graph

graph = create_server_graph()
