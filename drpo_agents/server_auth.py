"""LangGraph Server's auth handler (``langgraph.json``'s ``auth``): each request's user, from
:mod:`drpo_agents.server_credentials`, and what that user may see.

Every request but the health checks carries ``Authorization: Bearer <token>``. The token is one of
the static tokens of ``DRPO_SERVER_TOKENS`` (``user:token`` pairs, comma-separated), or a JWT signed
with ``DRPO_SERVER_JWT_SECRET`` (HS256) or with the private half of the PEM public key in the file
``DRPO_SERVER_JWT_PUBLIC_KEY`` (RS*, ES* or EdDSA by the key's type); its ``sub`` claim is the user
and ``exp`` is required (``aud`` and ``iss`` are checked when ``DRPO_SERVER_JWT_AUDIENCE`` and
``DRPO_SERVER_JWT_ISSUER`` are set). JWTs need PyJWT: ``pip install 'drpo-agents[server]'``.

Secure by default: a server with none of these set answers every request with a 401 that names the
variables; ``DRPO_SERVER_AUTH=off`` turns auth off for local development (every request is then
the one user ``local-dev``). A malformed setting stops the server at startup.

Each user sees only what they created: threads (and so their runs and state), crons and the
assistants they create are stamped ``metadata.owner`` and filtered on it; the assistants of
``langgraph.json``'s graphs are readable by every user and changeable by none; store namespaces
are prefixed with the user. Anything else is refused, and so is an unauthenticated user object
(the unverified Studio user of ``langgraph dev``). Tokens are compared in constant time and never
logged.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from langgraph_sdk import Auth

from drpo_agents.server_credentials import (
    DEV_USER,
    INVALID,
    NO_BEARER,
    NOT_CONFIGURED,
    SWITCH_VAR,
    ServerAuthSettings,
)

__all__ = ["DEV_USER", "INVALID", "NOT_CONFIGURED", "NO_BEARER", "OWNER", "ServerAuthSettings", "auth"]

logger = logging.getLogger(__name__)

OWNER = "owner"  # the metadata key that holds the user who created a resource


def _load() -> ServerAuthSettings:
    settings = ServerAuthSettings.from_env(os.environ)
    if settings.disabled:
        logger.warning("%s=off: the server accepts every request as user %r", SWITCH_VAR, DEV_USER)
    elif not settings.configured:
        logger.warning("%s: every request is refused with 401", NOT_CONFIGURED)
    return settings


SETTINGS = _load()
"""The settings the server runs with, read from the environment when the module is imported."""

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> str:
    """The user of a request, from its bearer token (401 without a valid one)."""
    return SETTINGS.identify(authorization)


def _refuse_unauthenticated(ctx: Auth.types.AuthContext) -> None:
    if not ctx.user.is_authenticated:
        raise Auth.exceptions.HTTPException(403, "an authenticated user is required")


def _stamp_owner(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Write the caller into ``value``'s metadata, the dict the server stores (never another owner)."""
    metadata = value.get("metadata")
    if isinstance(metadata, dict):
        metadata[OWNER] = ctx.user.identity
    else:
        value["metadata"] = {OWNER: ctx.user.identity}


@auth.on
async def deny_the_rest(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Refuse whatever no handler below covers (a resource a newer server adds)."""
    return False


@auth.on.threads
async def own_threads(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> Auth.types.FilterType:
    """Threads, and the runs and state on them: stamped with their creator and visible to them only."""
    _refuse_unauthenticated(ctx)
    if ctx.action in ("create", "update", "create_run"):
        _stamp_owner(ctx, value)
    return {OWNER: ctx.user.identity}


@auth.on.crons
async def own_crons(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> Auth.types.FilterType:
    """Cron jobs: stamped with their creator and visible to them only."""
    _refuse_unauthenticated(ctx)
    if ctx.action in ("create", "update"):
        _stamp_owner(ctx, value)
    return {OWNER: ctx.user.identity}


@auth.on.assistants(actions=["create", "update", "delete"])
async def own_assistants(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType:
    """Assistants a user creates are theirs to change; the graphs' own assistants have no owner."""
    _refuse_unauthenticated(ctx)
    if ctx.action in ("create", "update"):
        _stamp_owner(ctx, value)
    return {OWNER: ctx.user.identity}


@auth.on.assistants(actions=["read", "search"])
async def read_assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Every user reads every assistant: those of langgraph.json's graphs must be found by all."""
    _refuse_unauthenticated(ctx)


@auth.on.store
async def own_store_namespace(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Store items live under a namespace that starts with the user's id."""
    _refuse_unauthenticated(ctx)
    namespace = tuple(value.get("namespace") or ())
    if namespace[:1] != (ctx.user.identity,):
        value["namespace"] = (ctx.user.identity, *namespace)
