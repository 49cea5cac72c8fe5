"""LangGraph Server auth (drpo_agents.server_auth, langgraph.json's ``auth``).

The handler functions are tested directly (fast, no server); then one real ``langgraph dev``
(started by tests/test_langgraph_server.py's helper, so it skips without the CLI unless
``DRPO_REQUIRE_SERVER=1``) with two static-token users and a JWT secret checks what a client sees:
401 without a valid token, nothing of another user's threads, runs, crons, assistants or store
items, and a whole ``drpo`` run for the right token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt  # drpo-agents[server], part of [dev]
import pytest

from drpo_agents import server_auth
from drpo_agents.errors import ConfigError
from drpo_agents.server_auth import (
    DEV_USER,
    INVALID,
    NO_BEARER,
    NOT_CONFIGURED,
    OWNER,
    ServerAuthSettings,
    auth,
)

from .test_langgraph_server import QUERIES, running_server, sdk_client

Auth = server_auth.Auth

ALICE, BOB = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
JWT_SECRET = secrets.token_urlsafe(48)
ENV = {"DRPO_SERVER_TOKENS": f"alice:{ALICE}, bob:{BOB}", "DRPO_SERVER_JWT_SECRET": JWT_SECRET}
YEARLY = "0 0 1 1 *"  # a cron schedule that does not fire while the tests run


def _jwt(sub: str | None = "carol", key: Any = JWT_SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    payload = {"sub": sub, "exp": int(time.time()) + 300, **claims}
    token: str = jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=algorithm)
    return token


def _status(settings: ServerAuthSettings, authorization: str | None) -> tuple[int, str]:
    with pytest.raises(Auth.exceptions.HTTPException) as refused:
        settings.identify(authorization)
    return refused.value.status_code, str(refused.value.detail)


# ---- settings and authentication, without a server ----


def test_static_tokens_name_their_users_and_anything_else_is_a_401() -> None:
    settings = ServerAuthSettings.from_env(ENV)
    assert settings.identify(f"Bearer {ALICE}") == "alice"
    assert settings.identify(f"bearer   {BOB} ") == "bob"
    assert _status(settings, None) == (401, NO_BEARER)
    assert _status(settings, f"Basic {ALICE}") == (401, NO_BEARER)
    assert _status(settings, "Bearer ") == (401, NO_BEARER)
    assert _status(settings, f"Bearer {ALICE}x") == (401, INVALID)
    assert _status(settings, f"Bearer {ALICE[:-1]}") == (401, INVALID)
    assert ALICE not in repr(settings) and "alice" in repr(settings)


def test_a_server_without_configuration_refuses_everything_and_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("DRPO_SERVER_AUTH", *ENV, "DRPO_SERVER_JWT_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger=server_auth.__name__):
        settings = server_auth._load()
    assert not settings.configured
    assert _status(settings, f"Bearer {ALICE}") == (401, NOT_CONFIGURED)
    for name in (
        "DRPO_SERVER_TOKENS",
        "DRPO_SERVER_JWT_SECRET",
        "DRPO_SERVER_JWT_PUBLIC_KEY",
        "DRPO_SERVER_AUTH=off",
    ):
        assert name in NOT_CONFIGURED
    assert [r.getMessage() for r in caplog.records] == [
        f"{NOT_CONFIGURED}: every request is refused with 401"
    ]


def test_auth_off_is_explicit_and_makes_every_request_the_dev_user(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DRPO_SERVER_AUTH", "OFF")
    for name in (*ENV, "DRPO_SERVER_JWT_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger=server_auth.__name__):
        settings = server_auth._load()
    assert settings.identify(None) == settings.identify("Bearer anything") == DEV_USER
    assert "DRPO_SERVER_AUTH=off" in caplog.text
    with pytest.raises(ConfigError, match="unset one"):
        ServerAuthSettings.from_env({**ENV, "DRPO_SERVER_AUTH": "off"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DRPO_SERVER_AUTH": "maybe"}, "must be 'on' or 'off'"),
        ({"DRPO_SERVER_TOKENS": f"{ALICE}"}, "entry 1 is not USER:TOKEN"),
        ({"DRPO_SERVER_TOKENS": f"alice:{ALICE},:{BOB}"}, "entry 2 is not USER:TOKEN"),
        ({"DRPO_SERVER_TOKENS": f"al ice:{ALICE}"}, "entry 1 is not USER:TOKEN"),
        ({"DRPO_SERVER_TOKENS": "alice:short"}, "shorter than 16"),
        ({"DRPO_SERVER_TOKENS": f"alice:{ALICE},bob:{ALICE}"}, "also another entry's token"),
        ({"DRPO_SERVER_JWT_SECRET": "too-short"}, "shorter than 32"),
        ({"DRPO_SERVER_JWT_SECRET": JWT_SECRET, "DRPO_SERVER_JWT_PUBLIC_KEY": "k.pem"}, "not both"),
        ({"DRPO_SERVER_JWT_PUBLIC_KEY": "/nonexistent/key.pem"}, "cannot read a PEM public key"),
    ],
)
def test_a_malformed_setting_is_a_config_error_that_shows_no_secret(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        ServerAuthSettings.from_env(env)
    assert ALICE not in str(error.value) and BOB not in str(error.value)


def test_a_jwt_is_its_sub_claim_when_signed_with_the_secret_and_valid() -> None:
    settings = ServerAuthSettings.from_env({"DRPO_SERVER_JWT_SECRET": JWT_SECRET})
    assert settings.identify(f"Bearer {_jwt('carol')}") == "carol"
    unsigned = jwt.encode({"sub": "carol", "exp": int(time.time()) + 300}, None, algorithm="none")
    for bad in (
        _jwt(exp=int(time.time()) - 10),  # expired
        _jwt(exp=None),  # no expiry
        _jwt(sub=None),  # no subject
        _jwt(key=secrets.token_urlsafe(48)),  # another secret
        _jwt(algorithm="HS512"),  # not the configured algorithm
        unsigned,
        "not.a.jwt",
    ):
        assert _status(settings, f"Bearer {bad}") == (401, INVALID), bad

    checked = ServerAuthSettings.from_env(
        {
            "DRPO_SERVER_JWT_SECRET": JWT_SECRET,
            "DRPO_SERVER_JWT_AUDIENCE": "drpo",
            "DRPO_SERVER_JWT_ISSUER": "https://id.example",
        }
    )
    assert checked.identify(f"Bearer {_jwt(aud='drpo', iss='https://id.example')}") == "carol"
    assert _status(checked, f"Bearer {_jwt(aud='other', iss='https://id.example')}")[0] == 401
    assert _status(checked, f"Bearer {_jwt(aud='drpo')}")[0] == 401


def _hs256_by_hand(key: bytes, claims: dict[str, Any]) -> str:
    """A JWT signed with HMAC-SHA256 under ``key`` (PyJWT refuses to sign with a PEM key)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{part(header)}.{part(json.dumps(claims).encode())}"
    return f"{signing_input}.{part(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
def test_a_jwt_signed_with_the_private_half_of_the_public_key_file(tmp_path: Path, kind: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    def generate() -> Any:
        if kind == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "ec":
            return ec.generate_private_key(ec.SECP256R1())
        return ed25519.Ed25519PrivateKey.generate()

    algorithm = {"rsa": "RS256", "ec": "ES256", "ed25519": "EdDSA"}[kind]
    private, stranger = generate(), generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    settings = ServerAuthSettings.from_env({"DRPO_SERVER_JWT_PUBLIC_KEY": str(tmp_path / "key.pem")})
    assert settings.jwt_algorithms[0] == algorithm
    assert settings.identify(f"Bearer {_jwt('dave', key=private, algorithm=algorithm)}") == "dave"
    assert _status(settings, f"Bearer {_jwt('dave', key=stranger, algorithm=algorithm)}")[0] == 401
    # The algorithm-confusion attack: an HMAC token keyed with the public key's PEM text.
    forged = _hs256_by_hand(pem, {"sub": "dave", "exp": int(time.time()) + 300})
    assert _status(settings, f"Bearer {forged}")[0] == 401

    (tmp_path / "secret.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="cannot read a PEM public key"):
        ServerAuthSettings.from_env({"DRPO_SERVER_JWT_PUBLIC_KEY": str(tmp_path / "secret.pem")})


async def test_the_authenticate_handler_uses_the_servers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_auth, "SETTINGS", ServerAuthSettings.from_env(ENV))
    assert await server_auth.authenticate(f"Bearer {BOB}") == "bob"
    with pytest.raises(Auth.exceptions.HTTPException):
        await server_auth.authenticate(None)


# ---- authorization handlers, without a server ----


class _User:
    """What the server hands the handlers for an authenticated user (its ProxyUser)."""

    def __init__(self, identity: str) -> None:
        self.identity = self.display_name = identity
        self.is_authenticated = True
        self.permissions: list[str] = []


def _ctx(resource: str, action: str, user: Any = None) -> Any:
    return Auth.types.AuthContext(
        permissions=[], user=user or _User("alice"), resource=resource, action=action
    )


def _handler(resource: str, action: str) -> Any:
    """The handler the server runs for ``(resource, action)``: langgraph_api's precedence."""
    for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
        if key in auth._handlers:
            return auth._handlers[key][-1]
    return auth._global_handlers[-1]


def test_every_server_action_has_its_handler_and_anything_new_is_refused() -> None:
    expected = {
        **{("threads", a): server_auth.own_threads for a in ("create", "read", "update", "delete", "search")},
        ("threads", "create_run"): server_auth.own_threads,
        **{("crons", a): server_auth.own_crons for a in ("create", "read", "update", "delete", "search")},
        **{("assistants", a): server_auth.own_assistants for a in ("create", "update", "delete")},
        **{("assistants", a): server_auth.read_assistants for a in ("read", "search")},
        **{("store", a): server_auth.own_store_namespace for a in ("put", "get", "search", "delete")},
        ("store", "list_namespaces"): server_auth.own_store_namespace,
        ("webhooks", "create"): server_auth.deny_the_rest,
    }
    assert {key: _handler(*key) for key in expected} == expected


async def test_created_resources_belong_to_their_creator_whatever_the_request_says() -> None:
    for resource, action in [("threads", "create"), ("threads", "create_run"), ("crons", "create")]:
        metadata = {"owner": "bob", "purpose": "x"}
        value: dict[str, Any] = {"metadata": metadata}
        assert await _handler(resource, action)(ctx=_ctx(resource, action), value=value) == {OWNER: "alice"}
        assert value["metadata"] is metadata and metadata == {"owner": "alice", "purpose": "x"}
    value = {"metadata": None}
    await server_auth.own_assistants(ctx=_ctx("assistants", "create"), value=value)
    assert value == {"metadata": {OWNER: "alice"}}

    read: dict[str, Any] = {"thread_id": "t"}
    assert await server_auth.own_threads(ctx=_ctx("threads", "read"), value=read) == {OWNER: "alice"}
    assert read == {"thread_id": "t"}  # a read changes nothing
    assert await server_auth.read_assistants(ctx=_ctx("assistants", "search"), value={}) is None
    assert await server_auth.deny_the_rest(ctx=_ctx("store", "put"), value={}) is False


async def test_store_namespaces_start_with_the_user() -> None:
    for namespace, scoped in [
        (("notes",), ("alice", "notes")),
        (("alice", "notes"), ("alice", "notes")),
        (("bob", "notes"), ("alice", "bob", "notes")),
        ((), ("alice",)),
    ]:
        value: dict[str, Any] = {"namespace": namespace}
        await server_auth.own_store_namespace(ctx=_ctx("store", "put"), value=value)
        assert value["namespace"] == scoped


async def test_an_unauthenticated_user_object_is_refused_everywhere() -> None:
    """``langgraph dev`` makes an unverified StudioUser of any request with ``x-auth-scheme``."""
    studio = Auth.types.StudioUser("langgraph-studio-user")
    for resource, action in [
        ("threads", "read"),
        ("crons", "search"),
        ("assistants", "read"),
        ("store", "get"),
    ]:
        with pytest.raises(Auth.exceptions.HTTPException) as refused:
            await _handler(resource, action)(ctx=_ctx(resource, action, studio), value={})
        assert refused.value.status_code == 403


# ---- a real langgraph dev ----


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``langgraph dev`` with users alice and bob (static tokens) and JWTs under JWT_SECRET."""
    with running_server(tmp_path_factory, ENV) as (url, log):
        yield url
        text = log.read_text(errors="replace")
    assert all(secret not in text for secret in (ALICE, BOB, JWT_SECRET)), "a secret is in the server log"


def _http(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/threads/search",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)["detail"]


def _not_found(call: Any) -> None:
    with pytest.raises(httpx.HTTPStatusError) as refused:
        call()
    assert refused.value.response.status_code == 404, refused.value.response.text


@pytest.mark.server
def test_no_token_or_a_wrong_one_gets_401(auth_server: str) -> None:
    url = auth_server
    assert _http(url, {}) == (401, NO_BEARER)
    assert _http(url, {"Authorization": f"Basic {ALICE}"}) == (401, NO_BEARER)
    assert _http(url, {"Authorization": f"Bearer {ALICE}{BOB}"}) == (401, INVALID)
    assert _http(url, {"Authorization": f"Bearer {_jwt(exp=int(time.time()) - 10)}"}) == (401, INVALID)
    assert _http(url, {"Authorization": f"Bearer {_jwt(key=secrets.token_urlsafe(48))}"}) == (401, INVALID)
    # The Studio scheme gets no unverified user: disable_studio_auth in langgraph.json.
    assert _http(url, {"x-auth-scheme": "langsmith"}) == (401, NO_BEARER)
    assert _http(url, {"Authorization": f"Bearer {ALICE}"}) == (200, "")

    # The health check stays open; the OpenAPI document announces the bearer scheme.
    with urllib.request.urlopen(f"{url}/ok", timeout=30) as response:
        assert json.load(response)["ok"] is True
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=30) as response:
        assert "BearerAuth" in json.load(response)["components"]["securitySchemes"]


@pytest.mark.server
def test_the_right_token_runs_the_drpo_graph_end_to_end(auth_server: str) -> None:
    alice = sdk_client(auth_server, ALICE)
    thread = alice.threads.create(metadata={"purpose": "auth-test"})
    assert thread["metadata"] == {"purpose": "auth-test", OWNER: "alice"}
    output = alice.runs.wait(thread["thread_id"], "drpo", input={"queries": QUERIES, "run_id": "auth"})
    assert output["artifact"]["run_id"] == "auth" and output["artifact"]["system_prompt"]
    assert [run["status"] for run in alice.runs.list(thread["thread_id"])] == ["success"]
    assert alice.threads.get_state(thread["thread_id"])["values"]["artifact"] == output["artifact"]
    assert thread["thread_id"] in {t["thread_id"] for t in alice.threads.search()}
    # The server's memory is shared by its runs, but per user: Bob's run recalls none of Alice's
    # critiques (which quote her queries); her next run recalls her first.
    bob = sdk_client(auth_server, BOB)
    own = {"queries": QUERIES, "run_id": "auth-bob"}
    bobs = bob.runs.wait(bob.threads.create()["thread_id"], "drpo", input=own)["artifact"]
    assert bobs["memory_runs"] == [] and {r for c in bobs["candidates"] for r in c["lesson_runs"]} <= {
        "auth-bob"
    }
    again = {"queries": QUERIES, "run_id": "auth-2"}
    second = alice.runs.wait(alice.threads.create()["thread_id"], "drpo", input=again)["artifact"]
    assert second["memory_runs"] == ["auth"]


@pytest.mark.server
def test_a_user_cannot_see_or_touch_another_users_threads_runs_or_crons(auth_server: str) -> None:
    alice, bob = sdk_client(auth_server, ALICE), sdk_client(auth_server, BOB)
    thread = bob.threads.create(metadata={OWNER: "alice"})  # a forged owner is overwritten
    thread_id = thread["thread_id"]
    assert thread["metadata"][OWNER] == "bob"
    run = bob.runs.create(thread_id, "drpo", input={"queries": QUERIES})
    bob.runs.join(thread_id, run["run_id"])
    crons = [
        bob.crons.create_for_thread(thread_id, "drpo", schedule=YEARLY, input={"queries": QUERIES}),
        bob.crons.create("drpo", schedule=YEARLY, input={"queries": QUERIES}),
    ]
    try:
        assert thread_id not in {t["thread_id"] for t in alice.threads.search()}
        assert alice.threads.search(metadata={OWNER: "bob"}) == []
        _not_found(lambda: alice.threads.get(thread_id))
        _not_found(lambda: alice.threads.get_state(thread_id))
        _not_found(lambda: alice.threads.update(thread_id, metadata={OWNER: "alice"}))
        _not_found(lambda: alice.threads.delete(thread_id))
        _not_found(lambda: alice.runs.list(thread_id))
        _not_found(lambda: alice.runs.get(thread_id, run["run_id"]))
        _not_found(lambda: alice.runs.create(thread_id, "drpo", input={"queries": QUERIES}))
        _not_found(lambda: alice.crons.create_for_thread(thread_id, "drpo", schedule=YEARLY, input={}))
        assert alice.crons.search() == []
        for cron in crons:
            assert cron["metadata"][OWNER] == "bob"
            _not_found(lambda cron=cron: alice.crons.delete(cron["cron_id"]))

        # Bob still has all of it, untouched.
        assert bob.threads.get(thread_id)["metadata"][OWNER] == "bob"
        assert [r["status"] for r in bob.runs.list(thread_id)] == ["success"]
        assert {c["cron_id"] for c in bob.crons.search()} == {c["cron_id"] for c in crons}
        # A JWT is the user its sub claim names: here bob, through the other credential.
        bob_by_jwt = sdk_client(auth_server, _jwt("bob"))
        assert bob_by_jwt.threads.get(thread_id)["thread_id"] == thread_id
        carol = sdk_client(auth_server, _jwt("carol"))
        _not_found(lambda: carol.threads.get(thread_id))
        assert carol.threads.create()["metadata"] == {OWNER: "carol"}
    finally:
        for cron in crons:
            bob.crons.delete(cron["cron_id"])


@pytest.mark.server
def test_assistants_and_store_items_are_scoped_too(auth_server: str) -> None:
    alice, bob = sdk_client(auth_server, ALICE), sdk_client(auth_server, BOB)
    # The graphs' own assistants: found by every user, changed by none.
    builtin = {a["name"]: a["assistant_id"] for a in alice.assistants.search()}
    assert {"drpo", "realign"} <= set(builtin)
    _not_found(lambda: bob.assistants.delete(builtin["drpo"]))
    _not_found(lambda: bob.assistants.update(builtin["drpo"], metadata={"x": 1}))

    mine = bob.assistants.create("drpo", name="bobs-drpo", metadata={OWNER: "alice"})
    assert mine["metadata"][OWNER] == "bob"
    _not_found(lambda: alice.assistants.update(mine["assistant_id"], metadata={"x": 1}))
    _not_found(lambda: alice.assistants.delete(mine["assistant_id"]))
    bob.assistants.delete(mine["assistant_id"])

    alice.store.put_item(["notes"], "k", {"v": 1})
    assert [i["namespace"] for i in alice.store.search_items(["notes"])["items"]] == [["alice", "notes"]]
    assert bob.store.search_items(["notes"])["items"] == []
    assert bob.store.search_items(["alice", "notes"])["items"] == []
