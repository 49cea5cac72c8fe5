"""Connecting to Chroma: in memory, an embedded folder, or a server behind an authenticating
proxy, reached with a token sent on every request and TLS verified against a CA file.

Chroma 1.x has no server-side authentication of its own; a deployment puts a proxy that checks a
token in front of ``chroma run`` (docs/DEPLOYMENT.md shows one). The client reads:

* ``DRPO_CHROMA_TOKEN``: the token (``drpo --chroma-token-file FILE`` sets it from a file, so it
  stays out of the process list and shell history). Never logged, traced or written to a run file.
* ``DRPO_CHROMA_TOKEN_HEADER``: ``Authorization`` (default: ``Authorization: Bearer TOKEN``) or
  ``X-Chroma-Token`` (``X-Chroma-Token: TOKEN``).
* ``DRPO_CHROMA_CA_FILE``: a PEM bundle that signs an ``https://`` server's certificate (a
  private CA); without it the system's trust store is used.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import ParseResult, urlparse

from drpo_agents.errors import ConfigError, DRPOWarning, ServiceUnavailableError
from drpo_agents.infra.run_files import private_folder

CHROMA_TOKEN_ENV = "DRPO_CHROMA_TOKEN"
CHROMA_TOKEN_HEADER_ENV = "DRPO_CHROMA_TOKEN_HEADER"
CHROMA_CA_FILE_ENV = "DRPO_CHROMA_CA_FILE"
TokenHeader = Literal["Authorization", "X-Chroma-Token"]
_HEADERS: tuple[TokenHeader, ...] = ("Authorization", "X-Chroma-Token")


@dataclass(frozen=True)
class ChromaCredentials:
    """What a Chroma client sends and trusts; ``repr`` never shows the token."""

    token: str | None = field(default=None, repr=False)
    header: TokenHeader = "Authorization"
    ca_file: str | None = None

    @classmethod
    def from_env(cls) -> ChromaCredentials:
        """The credentials in the environment (see the module docstring).

        Raises:
            ConfigError: an unknown header name or a CA file that cannot be read.
        """
        token = os.environ.get(CHROMA_TOKEN_ENV, "").strip() or None
        header = os.environ.get(CHROMA_TOKEN_HEADER_ENV, "Authorization").strip()
        matched = next((h for h in _HEADERS if h.lower() == header.lower()), None)
        if matched is None:
            raise ConfigError(
                f"{CHROMA_TOKEN_HEADER_ENV} must be Authorization or X-Chroma-Token, got {header!r}"
            )
        ca_file = os.environ.get(CHROMA_CA_FILE_ENV, "").strip() or None
        if ca_file is not None:
            try:
                ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{CHROMA_CA_FILE_ENV}={ca_file}: not a readable PEM CA bundle ({exc})"
                ) from exc
        return cls(token=token, header=matched, ca_file=ca_file)

    def headers(self) -> dict[str, str]:
        """The header that carries the token (none without one)."""
        if self.token is None:
            return {}
        return (
            {"Authorization": f"Bearer {self.token}"}
            if self.header == "Authorization"
            else {self.header: self.token}
        )

    def verify(self) -> ssl.SSLContext | bool:
        """How an ``https://`` server's certificate is checked: the CA file, else the system's."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped).

    Raises:
        ConfigError: the file cannot be read or is empty.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the Chroma token file {path}: {exc}") from exc
    if not token:
        raise ConfigError(f"the Chroma token file {path} is empty")
    if path.stat().st_mode & 0o077:
        warnings.warn(
            f"the Chroma token file {path} is readable by others (mode {path.stat().st_mode & 0o777:o}): chmod 600 it",
            DRPOWarning,
            stacklevel=2,
        )
    return token


def check_server(url: str, credentials: ChromaCredentials) -> None:
    """Ask the server for its heartbeat with the credentials, so a wrong token, an untrusted
    certificate or a server that is not there is said in one line before any model call.

    Raises:
        ConfigError: the server (its proxy) refused the credentials, or its certificate failed.
        ServiceUnavailableError: nothing answers at ``url``.
    """
    import httpx

    parsed = urlparse(url)
    if credentials.token and parsed.scheme == "http" and not _is_loopback(parsed.hostname or ""):
        warnings.warn(
            f"the Chroma token is sent in clear text to {parsed.hostname}: use an https:// URL",
            DRPOWarning,
            stacklevel=3,
        )
    try:
        with httpx.Client(verify=credentials.verify(), timeout=30) as client:
            response = client.get(f"{url.rstrip('/')}/api/v2/heartbeat", headers=credentials.headers())
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, ssl.SSLError) or "CERTIFICATE" in str(exc).upper():
            trust = f"the CA in {CHROMA_CA_FILE_ENV}" if credentials.ca_file else "the system's CAs"
            raise ConfigError(
                f"the Chroma server at {url} failed TLS verification against {trust}: {exc} "
                f"(set {CHROMA_CA_FILE_ENV} to the CA that signed its certificate)"
            ) from exc
        raise ServiceUnavailableError(f"cannot reach the Chroma server at {url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise ServiceUnavailableError(f"cannot reach the Chroma server at {url}: {exc}") from exc
    if response.status_code in (401, 403):
        said = "was refused" if credentials.token else "is needed"
        raise ConfigError(
            f"the Chroma server at {url} answered {response.status_code} {response.reason_phrase}: "
            f"a token {said} (set {CHROMA_TOKEN_ENV}, which the drpo command also reads from "
            f"--chroma-token-file FILE; {CHROMA_TOKEN_HEADER_ENV} picks Authorization or X-Chroma-Token)"
        )
    if response.status_code >= 400:
        raise ServiceUnavailableError(
            f"the Chroma server at {url} answered {response.status_code} {response.reason_phrase} to its heartbeat"
        )


def server_url(text: str) -> ParseResult:
    """``text`` parsed as a Chroma server URL, ``http(s)://host:port`` (no network).

    Raises:
        ConfigError: credentials, a path or a query in the URL, or no host; the message shows only
            the scheme, host and port, never what else the URL held.
    """
    url = urlparse(text)
    shown = f"{url.scheme}://{url.hostname or ''}{f':{url.port}' if url.port else ''}"
    if url.username or url.password:
        raise ConfigError(
            f"the Chroma server URL must not hold credentials; put the token in {CHROMA_TOKEN_ENV} (URL: {shown})"
        )
    if not url.hostname or url.path.strip("/") or url.query or url.fragment:
        raise ConfigError(
            f"invalid Chroma server URL {shown}: want http(s)://host:port, with nothing after the port "
            f"(a token goes in {CHROMA_TOKEN_ENV})"
        )
    return url


def check_location(location: object) -> None:
    """Refuse a bad Chroma server URL before anything is written (a folder or object passes).

    Raises:
        ConfigError: see :func:`server_url`.
    """
    if isinstance(location, str) and location.startswith(("http://", "https://")):
        server_url(location)


def chroma_client(location: str | Path | None) -> Any:
    """A Chroma client: ``None`` in-memory, a folder (embedded ``PersistentClient``), or an
    ``http(s)://host:port`` URL of a ``chroma run`` server (``HttpClient``), reached with the
    token and CA file of this module's docstring and checked before it is used.

    Raises:
        ConfigError: a bad URL, credentials the server refuses, or a certificate that fails.
        ServiceUnavailableError: nothing answers at the URL.
    """
    import chromadb  # here: importing it takes half a second that a token check need not pay

    if location is None:
        return chromadb.EphemeralClient()
    text = str(location)
    if text.startswith(("http://", "https://")):
        return _server_client(text)
    private_folder(text)
    return chromadb.PersistentClient(path=text)


def _server_client(text: str) -> Any:
    import chromadb
    from chromadb.config import Settings

    url = server_url(text)
    credentials = ChromaCredentials.from_env()
    check_server(text, credentials)
    # Settings only for a CA file: chromadb refuses a second client of one server whose settings differ.
    settings = Settings(chroma_server_ssl_verify=credentials.ca_file) if credentials.ca_file else None
    try:
        with warnings.catch_warnings():
            # chromadb hands httpx the CA file's path, which httpx deprecates for an SSL context.
            warnings.filterwarnings("ignore", message=".*verify=<str>", category=DeprecationWarning)
            return chromadb.HttpClient(
                host=url.hostname or "",  # server_url refused a URL without one
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                headers=credentials.headers(),
                settings=settings,
            )
    except ValueError as exc:  # chromadb's "Could not connect to a Chroma server", or a refusal
        raise ServiceUnavailableError(f"cannot reach the Chroma server at {text}: {exc}") from exc
