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
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (or DRPO_TEST_POSTGRES_URL if set)."""
    if url := os.environ.get("DRPO_TEST_POSTGRES_URL"):
        yield url
        return
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
    # Not under pytest's tmp dir: the postgres user must be able to reach it.
    data = Path(tempfile.mkdtemp(prefix="drpo-pg-")) / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        data.parent.chmod(0o755)
        shutil.chown(data.parent, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
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
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data.parent, ignore_errors=True)


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
