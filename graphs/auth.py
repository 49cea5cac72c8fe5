"""LangGraph Server auth for the graphs of langgraph.json: bearer tokens or JWTs, per-user scoping.

Configured from the environment (``DRPO_SERVER_TOKENS``, ``DRPO_SERVER_JWT_SECRET``,
``DRPO_SERVER_JWT_PUBLIC_KEY``, ``DRPO_SERVER_AUTH=off`` for local development); see
:mod:`drpo_agents.server_auth`.
"""

from __future__ import annotations

from drpo_agents.server_auth import auth

__all__ = ["auth"]
