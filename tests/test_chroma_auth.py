"""A Chroma server behind a token-checking proxy, as deployed: no token or a wrong one is one
clear line and exit 2 before any model call, the right one runs, and it is written nowhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import chromadb
import pytest

from drpo_agents.errors import ConfigError
from drpo_agents.memory.chroma_connection import ChromaCredentials

from .servers import _certificate, chroma_server  # noqa: F401  (the fixture)
from .test_cli_errors import ENV, SMALL, drpo, one_error
from .token_proxy import TokenProxy

pytestmark = [pytest.mark.server, pytest.mark.slow]

TOKEN = "chroma-NOT-A-REAL-TOKEN-7f3a9c"


@pytest.fixture(scope="module")
def proxy(chroma_server: str) -> Iterator[TokenProxy]:  # noqa: F811
    with TokenProxy(int(chroma_server.rsplit(":", 1)[1]), TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chroma-tls")
    _certificate(folder, "ca", "/CN=drpo test CA", None)
    _certificate(folder, "server", "/CN=localhost", "ca", "DNS:localhost")
    _certificate(folder, "other-ca", "/CN=another CA", None)
    return folder


def _files_hold(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _optimize(tmp_path: Path, memory: str, env: dict[str, str], *flags: str) -> object:
    return drpo(
        *flags, "optimize", "--sandbox", *SMALL, "--memory", memory, "--run-dir", "run", cwd=tmp_path, env=env
    )


def test_no_token_or_a_wrong_one_is_one_line_and_exit_2_before_any_model_call(
    tmp_path: Path, proxy: TokenProxy
) -> None:
    forwarded = proxy.forwarded
    missing = _optimize(tmp_path, proxy.url, ENV)
    line = one_error(missing, 2, "401", "a token is needed", "DRPO_CHROMA_TOKEN")  # type: ignore[arg-type]
    assert proxy.url in line
    wrong = _optimize(tmp_path, proxy.url, {**ENV, "DRPO_CHROMA_TOKEN": "wrong-token-123456"})
    one_error(wrong, 2, "401", "a token was refused", secrets=("wrong-token-123456",))  # type: ignore[arg-type]
    assert proxy.forwarded == forwarded, "a request without the token reached Chroma"
    # Nothing ran: no model was called, so no response was journalled and no trace line written.
    run = tmp_path / "run"
    assert not (run / "responses.sqlite").exists() and not (run / "trace.jsonl").exists()


@pytest.mark.parametrize("header", ["Authorization", "X-Chroma-Token"])
def test_the_right_token_runs_and_is_written_nowhere(tmp_path: Path, proxy: TokenProxy, header: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    env = {**ENV, "DRPO_CHROMA_TOKEN_HEADER": header}
    result = _optimize(tmp_path, proxy.url, env, "--chroma-token-file", str(token_file))
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    assert TOKEN not in result.stdout + result.stderr  # type: ignore[attr-defined]
    token_file.unlink()
    assert not _files_hold(tmp_path, TOKEN)
    # The critiques are in the server's memory, behind the proxy.
    client = chromadb.HttpClient(host="127.0.0.1", port=proxy.upstream_port)
    config = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert config["memory"] == proxy.url
    assert client.get_collection("drpo-critiques").count() > 0


def test_https_with_a_private_ca(tmp_path: Path, proxy: TokenProxy, certificates: Path) -> None:
    with TokenProxy(
        proxy.upstream_port,
        TOKEN,
        certfile=str(certificates / "server.crt"),
        keyfile=str(certificates / "server.key"),
    ) as tls:
        assert tls.url.startswith("https://localhost:")
        env = {**ENV, "DRPO_CHROMA_TOKEN": TOKEN}
        untrusted = _optimize(
            tmp_path, tls.url, {**env, "DRPO_CHROMA_CA_FILE": str(certificates / "other-ca.crt")}
        )
        one_error(untrusted, 2, "TLS verification", "DRPO_CHROMA_CA_FILE", secrets=(TOKEN,))  # type: ignore[arg-type]
        system = _optimize(tmp_path, tls.url, env)  # a private CA is not in the system's store
        one_error(system, 2, "TLS verification", "system's CAs", secrets=(TOKEN,))  # type: ignore[arg-type]
        assert tls.forwarded == 0
        trusted = _optimize(tmp_path, tls.url, {**env, "DRPO_CHROMA_CA_FILE": str(certificates / "ca.crt")})
        assert trusted.returncode == 0, trusted.stderr  # type: ignore[attr-defined]
        assert tls.forwarded > 0
        assert not _files_hold(tmp_path, TOKEN)


def test_a_url_holding_credentials_is_refused_without_echoing_them(tmp_path: Path) -> None:
    result = _optimize(tmp_path, f"http://drpo:{TOKEN}@127.0.0.1:9/", ENV)
    one_error(result, 2, "must not hold credentials", "DRPO_CHROMA_TOKEN", secrets=(TOKEN,))  # type: ignore[arg-type]


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRPO_CHROMA_TOKEN", TOKEN)
    credentials = ChromaCredentials.from_env()
    assert credentials.headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in repr(credentials)
    monkeypatch.setenv("DRPO_CHROMA_TOKEN_HEADER", "x-chroma-token")
    assert ChromaCredentials.from_env().headers() == {"X-Chroma-Token": TOKEN}
    monkeypatch.setenv("DRPO_CHROMA_TOKEN_HEADER", "Cookie")
    with pytest.raises(ConfigError, match="Authorization or X-Chroma-Token"):
        ChromaCredentials.from_env()
    monkeypatch.delenv("DRPO_CHROMA_TOKEN_HEADER")
    (tmp_path / "ca.pem").write_text("not a certificate", encoding="utf-8")
    monkeypatch.setenv("DRPO_CHROMA_CA_FILE", str(tmp_path / "ca.pem"))
    with pytest.raises(ConfigError, match="not a readable PEM CA bundle"):
        ChromaCredentials.from_env()
