"""Real local servers for tests: a throwaway PostgreSQL cluster and a ``chroma run`` server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bindir() -> Path:
    """The newest installed PostgreSQL server binaries (the test is skipped without them)."""
    bindir = next(
        (
            p
            for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
            if (p / "initdb").exists()
        ),
        None,
    )
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql); .ci/run installs them")
    return bindir


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster: its TCP port on 127.0.0.1 and its Unix socket folder."""

    port: int
    socket_dir: Path


@contextmanager
def _postgres_cluster(configure: Callable[[Path], None] | None = None) -> Iterator[PostgresCluster]:
    """Start a throwaway PostgreSQL cluster on 127.0.0.1, stopped and deleted on exit.

    ``configure(data)`` runs after ``initdb`` and before the start: it may write files into the
    data folder (``postgresql.auto.conf``, ``pg_hba.conf``, certificates), which are then handed to
    the server's user.
    """
    bindir = _postgres_bindir()
    # Not under pytest's tmp dir: the postgres user must be able to reach it.
    data = Path(tempfile.mkdtemp(prefix="drpo-pg-")) / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        data.parent.chmod(0o755)
        shutil.chown(data.parent, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
        )
        if configure is not None:
            configure(data)
            if as_user:  # files written as root: the server must own them (and its key)
                for path in data.rglob("*"):
                    shutil.chown(path, "postgres", "postgres")
        started = subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(data.parent / "log"),
                "-o",
                f"-p {port} -k {data.parent} -h 127.0.0.1",
                "start",
            ],
            capture_output=True,
        )
        if started.returncode != 0:
            log = data.parent / "log"
            pytest.fail(f"PostgreSQL did not start: {log.read_text() if log.exists() else started.stderr}")
        yield PostgresCluster(port=port, socket_dir=data.parent)
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (or DRPO_TEST_POSTGRES_URL if set)."""
    if url := os.environ.get("DRPO_TEST_POSTGRES_URL"):
        yield url
        return
    with _postgres_cluster() as cluster:
        yield f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chroma run`` server on 127.0.0.1."""
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        pytest.skip("the chroma CLI is not installed next to this Python")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("chroma-server")
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(chroma), "run", "--path", str(workdir / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/api/v2/heartbeat", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Poll a freshly started server until it answers (bounded; fails if the process dies)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            threading.Event().wait(0.1)
    pytest.fail(f"server at {url} not ready after {seconds} s")


@dataclass(frozen=True)
class PostgresTLS:
    """A PostgreSQL server that accepts TLS connections only, with the certificates it was made with.

    The server certificate names ``localhost`` only (not ``127.0.0.1``), signed by ``ca``;
    ``other_ca`` signed nothing here. Role ``drpo`` logs in with ``password`` (database ``drpo``);
    role ``drpo_cert`` with the client certificate ``client_cert``/``client_key`` only (database
    ``drpo_cert``). Plain connections are refused (``hostssl`` lines only in ``pg_hba.conf``).
    """

    port: int
    password: str
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path

    def url(self, host: str = "localhost", user: str = "drpo", **params: str | Path) -> str:
        """A URL to the server as ``host`` (always reached at 127.0.0.1: ``hostaddr``) with
        ``params`` added (``sslmode``, ``sslrootcert``, ...); role ``drpo`` gets its password."""
        login = f"{user}:{self.password}" if user == "drpo" else user
        query = "&".join(f"{key}={value}" for key, value in {"hostaddr": "127.0.0.1", **params}.items())
        return f"postgresql://{login}@{host}:{self.port}/{user}?{query}"


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _certificate(folder: Path, name: str, subject: str, ca: str | None, san: str | None = None) -> None:
    """``name.key`` (P-256) and ``name.crt``: self-signed if ``ca`` is None, else signed by
    ``folder/ca.crt``/``ca.key``, with ``san`` as its subjectAltName."""
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    key.chmod(0o600)  # libpq and the server refuse a key others can read
    if ca is None:
        _openssl(
            "req", "-x509", "-new", "-key", key, "-out", crt, "-days", "2", "-subj", subject,
            "-addext", "basicConstraints=critical,CA:TRUE",
        )  # fmt: skip
        return
    csr, extensions = folder / f"{name}.csr", folder / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", subject)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", folder / f"{ca}.crt", "-CAkey", folder / f"{ca}.key",
        "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", extensions,
    )  # fmt: skip


@pytest.fixture(scope="session")
def postgres_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresTLS]:
    """A throwaway PostgreSQL server on 127.0.0.1 that takes TLS connections only (certificates
    made here with the ``openssl`` command)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make the test certificates")
    certs = tmp_path_factory.mktemp("postgres-tls")
    _certificate(certs, "ca", "/CN=drpo test CA", None)
    _certificate(certs, "other_ca", "/CN=another test CA", None)
    _certificate(certs, "server", "/CN=localhost", "ca", san="DNS:localhost")
    _certificate(certs, "client", "/CN=drpo_cert", "ca")

    def configure(data: Path) -> None:
        for name in ("server.crt", "server.key", "ca.crt"):
            shutil.copy(certs / name, data / name)
        with (data / "postgresql.auto.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
            conf.write("ssl_ca_file = 'ca.crt'\n")  # to verify client certificates
        (data / "pg_hba.conf").write_text(
            "local   all all                    trust\n"
            "hostssl all drpo_cert 127.0.0.1/32 cert\n"
            "hostssl all all       127.0.0.1/32 scram-sha-256\n"
        )

    password = "pw-TLS-NOT-A-REAL-PASSWORD-7"
    with _postgres_cluster(configure) as cluster:
        import psycopg

        with psycopg.connect(
            host=str(cluster.socket_dir), port=cluster.port, user="postgres", autocommit=True
        ) as admin:
            for role in ("drpo", "drpo_cert"):
                admin.execute(f"CREATE ROLE {role} LOGIN")
                admin.execute(f"CREATE DATABASE {role} OWNER {role}")
            admin.execute(f"ALTER ROLE drpo PASSWORD '{password}'")
        yield PostgresTLS(
            port=cluster.port,
            password=password,
            ca=certs / "ca.crt",
            other_ca=certs / "other_ca.crt",
            client_cert=certs / "client.crt",
            client_key=certs / "client.key",
        )
