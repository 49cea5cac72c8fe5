"""PostgreSQL checkpoints over TLS: ``sslmode=verify-full`` (with ``sslrootcert``, and with a client
certificate) and ``sslmode=require`` work from the CLI and from Python; a wrong host name, a wrong
CA, a connection without TLS or without the client certificate is one ``error:`` line that says
what failed, before any model call, and never shows the password. The server (``postgres_tls``)
takes TLS connections only, with certificates the fixture makes."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from drpo_agents import DRPOConfig, aoptimize
from drpo_agents.datasets import load_training_queries
from drpo_agents.errors import ServiceUnavailableError
from drpo_agents.infra.checkpoints import open_checkpointer
from drpo_agents.infra.run_files import ARTIFACT_FILE, CHECKPOINT_FILE, JOURNAL_FILE
from drpo_agents.models.sandbox import sandbox_models
from drpo_agents.run_record import RunRecord

from . import servers
from .servers import PostgresTLS
from .test_cli_errors import drpo, one_error

pytestmark = pytest.mark.server
postgres_tls = servers.postgres_tls  # the fixture, for this module (conftest shares the others)

# One rewrite of one query: the smallest run that checkpoints every kind of step.
TINY = ["--depth", "1", "--beam-size", "1", "--n-actions", "1", "--queries-per-step", "1", "--quiet"]
CONFIG = DRPOConfig(beam_size=1, n_actions=1, depth=1, max_depth_increase=0, queries_per_step=1, seed=5)


def _checkpoints(url: str, thread_id: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()
    return int(row[0]) if row else 0


def _model_calls(run: Path) -> int:
    """Finished model calls of a run (its response journal's rows)."""
    if not (run / JOURNAL_FILE).exists():
        return 0
    with closing(sqlite3.connect(run / JOURNAL_FILE)) as db:
        return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])


@pytest.mark.slow
def test_verify_full_run_keeps_its_checkpoints_in_postgres_and_resumes(
    tmp_path: Path, postgres_tls: PostgresTLS
) -> None:
    url = postgres_tls.url(sslmode="verify-full", sslrootcert=postgres_tls.ca)
    result = drpo("optimize", "--sandbox", *TINY, "--checkpointer", url, "--run-dir", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    run = tmp_path / "run"
    run_id = RunRecord.load(run).run_id
    assert not (run / CHECKPOINT_FILE).exists(), "the checkpoints went to PostgreSQL, not the run directory"
    assert _model_calls(run) > 0
    stored = _checkpoints(url, run_id)
    assert stored > 0

    resumed = drpo("resume", "run", "--extend-depth", "1", "--quiet", "--checkpointer", url, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _checkpoints(url, run_id) > stored, "the resumed levels were checkpointed over TLS too"
    for output in (result, resumed):
        assert postgres_tls.password not in output.stdout + output.stderr
    secret = postgres_tls.password.encode()
    assert not [path for path in run.rglob("*") if path.is_file() and secret in path.read_bytes()]


@pytest.mark.parametrize("mode", ["require", "client certificate"])
async def test_python_runs_over_require_and_with_a_client_certificate(
    postgres_tls: PostgresTLS, mode: str
) -> None:
    tls = postgres_tls
    url = (
        # require encrypts without checking the certificate: 127.0.0.1 is not a name it lists.
        tls.url(host="127.0.0.1", sslmode="require")
        if mode == "require"
        else tls.url(
            user="drpo_cert",
            sslmode="verify-full",
            sslrootcert=tls.ca,
            sslcert=tls.client_cert,
            sslkey=tls.client_key,
        )
    )
    run_id = f"tls-{mode.replace(' ', '-')}"
    await aoptimize(
        load_training_queries()[:4],
        config=CONFIG,
        run_id=run_id,
        checkpointer=url,
        **sandbox_models(CONFIG.seed),
    )
    assert _checkpoints(url, run_id) > 0
    with psycopg.connect(url) as db:
        row = db.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == (True,)


def _failing_url(tls: PostgresTLS, case: str) -> str:
    if case == "wrong host name":  # the certificate names localhost only
        return tls.url(host="127.0.0.1", sslmode="verify-full", sslrootcert=tls.ca)
    if case == "wrong CA":  # and the password as a parameter, not in the URL's user part
        url = tls.url(sslmode="verify-full", sslrootcert=tls.other_ca)
        return url.replace(f"drpo:{tls.password}@", "drpo@") + f"&password={tls.password}"
    if case == "no TLS":
        return tls.url(sslmode="disable")
    assert case == "no client certificate"
    return tls.url(user="drpo_cert", sslmode="verify-full", sslrootcert=tls.ca)


FAILURES = {
    "wrong host name": (
        "TLS certificate verification failed for the checkpointer's server 127.0.0.1:",
        'server certificate for "localhost" (and 1 other name) does not match host name "127.0.0.1"',
    ),
    "wrong CA": (
        "TLS certificate verification failed for the checkpointer's server localhost:",
        "SSL error: certificate verify failed; sslrootcert must be the CA certificate that signed",
    ),
    "no TLS": (
        "the checkpointer's server localhost:",
        "refused a connection without TLS (sslmode=disable)",
        "use sslmode=verify-full",
    ),
    "no client certificate": (
        "TLS client certificate missing or refused for the checkpointer's server localhost:",
        "give sslcert= and sslkey=",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failed_tls_connection_is_one_line_before_any_model_call(
    tmp_path: Path, postgres_tls: PostgresTLS, case: str
) -> None:
    url = _failing_url(postgres_tls, case)
    result = drpo("optimize", "--sandbox", *TINY, "--checkpointer", url, "--run-dir", "run", cwd=tmp_path)
    line = one_error(
        result,
        1,
        "cannot connect to PostgreSQL at postgresql://",
        *FAILURES[case],
        secrets=(postgres_tls.password,),
    )
    assert "drpo resume" not in line  # nothing was checkpointed: the same command starts it again
    assert _model_calls(tmp_path / "run") == 0
    assert not (tmp_path / "run" / ARTIFACT_FILE).exists()


async def test_python_gets_the_same_error_without_the_password(postgres_tls: PostgresTLS) -> None:
    url = _failing_url(postgres_tls, "wrong host name")
    with pytest.raises(ServiceUnavailableError, match="TLS certificate verification failed") as caught:
        await aoptimize(
            load_training_queries()[:4], config=CONFIG, checkpointer=url, **sandbox_models(CONFIG.seed)
        )
    assert postgres_tls.password not in str(caught.value)
    assert "[redacted]" in str(caught.value)


async def test_requiring_tls_of_a_server_without_it_says_so(postgres_url: str) -> None:
    if os.environ.get("DRPO_TEST_POSTGRES_URL"):
        pytest.skip("needs the throwaway server, which has TLS off")
    url = postgres_url + ("&" if "?" in postgres_url else "?") + "sslmode=require"
    with pytest.raises(ServiceUnavailableError, match=r"TLS not available .*the server has ssl = off"):
        async with open_checkpointer(url, None):
            pass


def test_the_resume_hint_never_repeats_a_url_holding_a_password() -> None:
    from drpo_agents.cli.errors import resume_command

    for url in ("postgresql://drpo:pw-123456789@db/drpo", "postgresql://drpo@db/drpo?password=pw-123456789"):
        hint = resume_command(Path("run"), url)
        assert hint == "drpo resume run --checkpointer URL (the same PostgreSQL URL)" and "pw-" not in hint
    plain = "postgresql://drpo@db/drpo?sslmode=verify-full"
    assert resume_command(Path("run"), plain) == f"drpo resume run --checkpointer '{plain}'"
