"""Where a run's checkpoints live: an instance, a PostgreSQL URL, or the run directory's SQLite file."""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from drpo_agents.errors import ConfigError, DRPOError, ServiceUnavailableError
from drpo_agents.infra.run_files import CHECKPOINT_FILE
from drpo_agents.run_spec import Checkpointer

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow


@asynccontextmanager
async def open_checkpointer(
    spec: Checkpointer, run_dir: Path | None
) -> AsyncIterator[BaseCheckpointSaver[Any] | None]:
    """A checkpointer from an instance, a ``postgresql://`` URL, or the run directory's SQLite file."""
    if isinstance(spec, BaseCheckpointSaver):
        yield spec
    elif isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as exc:
            raise ConfigError("PostgreSQL checkpoints need: pip install 'drpo-agents[postgres]'") from exc
        # Not ``AsyncPostgresSaver.from_conn_string``: its connection rolls back when an error
        # leaves the run, and after a checkpoint write cancelled mid-pipeline (a failing node
        # cancels its siblings) that rollback fails and psycopg logs a warning onto the CLI's
        # stderr beside the real error. In autocommit mode there is nothing to roll back.
        postgres = await _connect_postgres(spec)
        try:
            saver = AsyncPostgresSaver(postgres)
            await _setup_postgres(saver, spec)
            yield saver
        finally:
            await postgres.close()
    elif spec is not None:
        raise ConfigError(f"checkpointer must be a BaseCheckpointSaver or a postgresql:// URL, got {spec!r}")
    elif run_dir is not None:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with aiosqlite.connect(str(run_dir / CHECKPOINT_FILE)) as connection:
            # Before the saver creates its tables (a new file only): the compressed blobs, 1-4 kB
            # each, fill 16 kB pages well but leave a third of 4 kB pages empty.
            await connection.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
            # The saver puts the file in WAL mode; there a commit survives the process being
            # killed without waiting for the disk (as the response journal's do).
            await connection.execute("PRAGMA synchronous=NORMAL")
            yield AsyncSqliteSaver(connection, serde=compressed_serde())
    else:
        yield None


SQLITE_PAGE_SIZE = 16384


class ZlibCodec:
    """LangGraph's blob-cipher hook (``EncryptedSerializer``) used as a compressor.

    Every checkpoint and write blob is zlib-compressed and its type tag gains ``+zlib``; blobs
    without it, as runs before this wrote, load as they are. The task payloads and records are
    text that repeats (ICL shots, prompts, answers, score rationales): about 4x smaller, at tens
    of microseconds per blob (measured: zlib's default level is as fast here as level 1 and 8%
    smaller). PostgreSQL compresses large values itself (TOAST), so only the run directory's
    SQLite file uses this.
    """

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        return "zlib", zlib.compress(plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        if ciphername != "zlib":
            raise DRPOError(f"checkpoint blob encoded with unknown codec {ciphername!r}")
        return zlib.decompress(ciphertext)


def compressed_serde() -> EncryptedSerializer:
    """The run directory's checkpoint serializer: LangGraph's default, its blobs zlib-compressed."""
    return EncryptedSerializer(ZlibCodec(), BaseCheckpointSaver.serde)


async def _connect_postgres(url: str) -> AsyncConnection[DictRow]:
    """The saver's connection (``from_conn_string``'s settings). A wrong URL, a closed port, a
    refused login or a failed TLS handshake is one clear error (the driver's own is several lines;
    the password is never part of the message)."""
    import psycopg
    from psycopg.rows import dict_row

    from drpo_agents.tracing import scrub_secrets

    params = _conninfo(url)
    secrets = [s for s in (params.get("password"), params.get("sslpassword"), urlparse(url).password) if s]
    shown = _without(secrets, scrub_secrets(url))

    def reason(exc: Exception) -> str:
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return _without(secrets, _tls_reason(text, params) or text)

    try:
        return await psycopg.AsyncConnection.connect(
            url, connect_timeout=10, autocommit=True, prepare_threshold=0, row_factory=dict_row
        )
    except psycopg.OperationalError as exc:
        raise ServiceUnavailableError(f"cannot connect to PostgreSQL at {shown}: {reason(exc)}") from exc
    except psycopg.Error as exc:
        raise ConfigError(f"invalid PostgreSQL URL {shown}: {reason(exc)}") from exc


def _conninfo(url: str) -> dict[str, str]:
    """The URL's connection parameters (empty if the driver cannot parse it: it says why on connect)."""
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {key: str(value) for key, value in conninfo_to_dict(url).items() if value is not None}
    except Error:
        return {}


def _without(secrets: list[str], text: str) -> str:
    # Also a password given as ``?password=...``, which the URL scrubber does not see.
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


# libpq's words for a failed TLS connection: what failed, and what to check.
_VERIFICATION = "TLS certificate verification failed"
_TLS_FAILURES = (
    ("does not match host name", _VERIFICATION, "with sslmode=verify-full the URL's host must be a name the certificate lists"),
    ("certificate verify failed", _VERIFICATION, "sslrootcert must be the CA certificate that signed the server's certificate (not expired)"),
    ("root certificate file", _VERIFICATION, ""),  # libpq says what to do
    ("valid client certificate", "TLS client certificate missing or refused", "give sslcert= and sslkey=, a certificate the server's ssl_ca_file signed, for this user"),
    ("private key file", "TLS client certificate unusable", "sslkey= must name its key, readable by its owner only"),
    ("server does not support SSL", "TLS not available", "the server has ssl = off"),
)  # fmt: skip


def _tls_reason(text: str, params: dict[str, str]) -> str | None:
    """A failed TLS connection said as one: what failed, for which host, and what to check;
    None for any other failure."""
    import os

    # libpq's "connection to server at "127.0.0.1", port 5432 failed: ": the host is said once, below.
    detail = re.sub(
        r'(connection failed: )?connection to server at "[^"]*"( \([^)]*\))?, port \d+ failed: ', "", text
    )
    detail = re.sub(r"\s+", " ", detail)  # "FATAL:  no pg_hba.conf entry"
    server = f"the checkpointer's server {params.get('host', 'localhost')}:{params.get('port', '5432')}"
    sslmode = params.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer"
    for words, what, hint in _TLS_FAILURES:
        if words in detail:
            return f"{what} for {server} (sslmode={sslmode}): {detail}" + (f"; {hint}" if hint else "")
    if "no encryption" in detail and sslmode == "disable":
        return (
            f"{server} refused a connection without TLS (sslmode=disable): {detail}; it takes TLS "
            "connections only: use sslmode=verify-full with sslrootcert= in the URL"
        )
    return None


# Any fixed 64-bit key: all drpo-agents processes serialize checkpoint-table setup on it.
_SETUP_LOCK_KEY = 0x6472706F


async def _setup_postgres(saver: Any, url: str, wait_seconds: float = 120.0) -> None:
    """Create or migrate the checkpoint tables; several runs starting at once on one database
    would race on them (duplicate migrations, catalog conflicts), so setup holds an advisory lock.

    The lock is polled, not waited on: the migrations build indexes CONCURRENTLY, which wait
    for every open statement, including another run's blocked lock request (a deadlock).
    """
    import asyncio

    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(url, autocommit=True) as lock_connection:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            cursor = await lock_connection.execute("SELECT pg_try_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
            row = await cursor.fetchone()
            if row and row[0]:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise DRPOError(
                    "timed out waiting for another run to set up the PostgreSQL checkpoint tables"
                )
            await asyncio.sleep(0.05)
        try:
            await saver.setup()
        finally:
            await lock_connection.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))


def check_checkpoint_file(path: Path) -> None:
    """Refuse to resume from a missing, damaged or foreign SQLite file (before anything writes to it)."""
    import sqlite3

    if not path.is_file():
        raise ConfigError(
            f"no {path.name} in {path.parent}: nothing to resume. The run stopped before its first "
            "checkpoint (start it again with the same command), or it kept its checkpoints in "
            "PostgreSQL (pass --checkpointer)"
        )
    try:
        with closing(sqlite3.connect(path)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise ConfigError(f"{path} is damaged or not a checkpoint database: {exc}") from exc
    if not tables:  # created, then killed before its tables were: as if there were no file
        raise ConfigError(
            f"{path} holds no checkpoint: the run stopped before its first one, nothing to resume "
            "(start it again)"
        )
    if "checkpoints" not in tables:
        raise ConfigError(f"{path} is not a LangGraph checkpoint database (no checkpoints table)")
