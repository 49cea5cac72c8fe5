"""Who is calling LangGraph Server: a request's bearer token (a static per-user token or a JWT)
turned into a user id, by the settings the ``DRPO_SERVER_*`` variables give (see
:mod:`drpo_agents.server_auth` for the variables and the secure default)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph_sdk import Auth

from drpo_agents.errors import ConfigError

SWITCH_VAR = "DRPO_SERVER_AUTH"
TOKENS_VAR = "DRPO_SERVER_TOKENS"
JWT_SECRET_VAR = "DRPO_SERVER_JWT_SECRET"
JWT_PUBLIC_KEY_VAR = "DRPO_SERVER_JWT_PUBLIC_KEY"
JWT_AUDIENCE_VAR = "DRPO_SERVER_JWT_AUDIENCE"
JWT_ISSUER_VAR = "DRPO_SERVER_JWT_ISSUER"

DEV_USER = "local-dev"  # the one user of a server with DRPO_SERVER_AUTH=off
MIN_TOKEN_CHARS = 16
MIN_SECRET_CHARS = 32
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")

NOT_CONFIGURED = (
    f"server auth is not configured: set {TOKENS_VAR} (user:token pairs), {JWT_SECRET_VAR} or "
    f"{JWT_PUBLIC_KEY_VAR} on the server, or {SWITCH_VAR}=off for local development only"
)
NO_BEARER = "missing bearer token: send the header 'Authorization: Bearer <token>'"
INVALID = "invalid token"


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(401, detail, {"WWW-Authenticate": "Bearer"})


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _parse_tokens(text: str) -> tuple[tuple[bytes, str], ...]:
    """``alice:TOKEN,bob:TOKEN`` as (SHA-256 of the token, user) pairs; errors never show a token."""
    pairs: list[tuple[bytes, str]] = []
    for number, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        user, colon, token = entry.partition(":")
        user, token = user.strip(), token.strip()
        if not colon or not _USER.fullmatch(user):
            raise ConfigError(f"{TOKENS_VAR}: entry {number} is not USER:TOKEN with a user id like 'alice'")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{TOKENS_VAR}: the token of {user!r} is shorter than {MIN_TOKEN_CHARS} characters"
            )
        if any(hmac.compare_digest(_digest(token), known) for known, _ in pairs):
            raise ConfigError(f"{TOKENS_VAR}: the token of {user!r} is also another entry's token")
        pairs.append((_digest(token), user))
    return tuple(pairs)


def _jwt_module() -> Any:
    try:
        import jwt
    except ImportError as exc:
        raise ConfigError(
            f"{JWT_SECRET_VAR} / {JWT_PUBLIC_KEY_VAR} need PyJWT: pip install 'drpo-agents[server]'"
        ) from exc
    return jwt


def _public_key(path: str) -> tuple[Any, tuple[str, ...]]:
    """The PEM public key in the file at ``path`` and the JWT algorithms of its type."""
    _jwt_module()
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as exc:
        raise ConfigError(
            f"{JWT_PUBLIC_KEY_VAR} needs cryptography: pip install 'drpo-agents[server]'"
        ) from exc

    try:
        key = load_pem_public_key(Path(path).expanduser().read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{JWT_PUBLIC_KEY_VAR}: cannot read a PEM public key from {path}: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return key, ("RS256", "RS384", "RS512")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, ("ES256", "ES384", "ES512")
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key, ("EdDSA",)
    raise ConfigError(f"{JWT_PUBLIC_KEY_VAR}: {path} holds a {type(key).__name__}, not an RSA, EC or Ed key")


@dataclass(frozen=True, repr=False)
class ServerAuthSettings:
    """Who may call the server: static tokens, a JWT key, or auth switched off.

    Build it with :meth:`from_env`; :meth:`identify` turns an ``Authorization`` header into a user.
    The repr names the users only, never a token or key.
    """

    tokens: tuple[tuple[bytes, str], ...] = ()
    jwt_key: Any = None
    jwt_algorithms: tuple[str, ...] = ()
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    disabled: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServerAuthSettings:
        """Read the ``DRPO_SERVER_*`` variables; raises :class:`ConfigError` when one is malformed."""
        switch = environ.get(SWITCH_VAR, "").strip().lower()
        if switch not in ("", "on", "off"):
            raise ConfigError(f"{SWITCH_VAR} must be 'on' or 'off', not {switch!r}")
        tokens = _parse_tokens(environ.get(TOKENS_VAR, ""))
        secret = environ.get(JWT_SECRET_VAR, "").strip()
        key_path = environ.get(JWT_PUBLIC_KEY_VAR, "").strip()
        if secret and key_path:
            raise ConfigError(f"set {JWT_SECRET_VAR} or {JWT_PUBLIC_KEY_VAR}, not both")
        if secret and len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(f"{JWT_SECRET_VAR} is shorter than {MIN_SECRET_CHARS} characters")
        key: Any = None
        algorithms: tuple[str, ...] = ()
        if secret:
            _jwt_module()
            key, algorithms = secret, ("HS256",)
        elif key_path:
            key, algorithms = _public_key(key_path)
        if switch == "off":
            if tokens or key is not None:
                raise ConfigError(f"{SWITCH_VAR}=off and server tokens or a JWT key are set: unset one")
            return cls(disabled=True)
        return cls(
            tokens=tokens,
            jwt_key=key,
            jwt_algorithms=algorithms,
            jwt_audience=environ.get(JWT_AUDIENCE_VAR, "").strip() or None,
            jwt_issuer=environ.get(JWT_ISSUER_VAR, "").strip() or None,
        )

    @property
    def configured(self) -> bool:
        """Whether any credential is accepted (static tokens or a JWT key)."""
        return bool(self.tokens) or self.jwt_key is not None

    def __repr__(self) -> str:
        users = sorted({user for _, user in self.tokens})
        return f"ServerAuthSettings(users={users}, jwt={list(self.jwt_algorithms)}, disabled={self.disabled})"

    def identify(self, authorization: str | None) -> str:
        """The user id of a request's ``Authorization`` header; raises a 401 ``HTTPException``."""
        if self.disabled:
            return DEV_USER
        if not self.configured:
            raise _unauthorized(NOT_CONFIGURED)
        scheme, _, credential = (authorization or "").strip().partition(" ")
        token = credential.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized(NO_BEARER)
        presented = _digest(token)  # equal lengths, and every entry is compared: the time says nothing
        user: str | None = None
        for known, owner in self.tokens:
            if hmac.compare_digest(presented, known):
                user = owner
        if user is None and self.jwt_key is not None:
            user = self._jwt_subject(token)
        if user is None:
            raise _unauthorized(INVALID)
        return user

    def _jwt_subject(self, token: str) -> str | None:
        jwt = _jwt_module()
        try:
            claims = jwt.decode(
                token,
                self.jwt_key,
                algorithms=list(self.jwt_algorithms),
                audience=self.jwt_audience,
                issuer=self.jwt_issuer,
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) and subject else None
