"""Structured output against servers that refuse some mechanisms, through the real langchain-openai client.

The fake server (tests/openai_server.py) answers with the sandbox models, so whatever method the
``auto`` discovery settles on, the search must find exactly what an in-process sandbox run finds;
these tests check which method it settled on, that it was remembered (few rejected requests), what
went over the wire (no length limits in schemas, a reply cap on every request) and what the
artifact records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from drpo_agents import AlignmentArtifact, DRPOConfig, optimize
from drpo_agents.config import DEFAULT_ROLE_MAX_TOKENS, StructuredOutputMethod
from drpo_agents.errors import DRPOError
from drpo_agents.infra.calls import run_plan
from drpo_agents.models.registry import with_output_limit
from drpo_agents.models.sandbox import sandbox_models
from drpo_agents.schemas import AnswerEvaluation, PromptProposals
from drpo_agents.structured import StructuredMethods, is_method_rejection, plan_structured, provider_schema

from .openai_server import FakeOpenAIServer, Mechanism, http_error
from .test_http_path import QUERIES, RUN_ID, SETTINGS, http_models, summary

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning"),
]

# One graph task at a time: each model meets its first rejection exactly once.
SEQUENTIAL = {**SETTINGS, "max_concurrency": 1}


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("openai._base_client.INITIAL_RETRY_DELAY", 0.002, raising=False)


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    artifact = optimize(
        QUERIES, responder="sandbox", judge="sandbox", config=DRPOConfig(**SEQUENTIAL), run_id=RUN_ID
    )
    assert len(artifact.candidates) > 3 and not any(e.error for e in artifact.evaluations)
    return summary(artifact)


def run(
    server: FakeOpenAIServer, method: StructuredOutputMethod = "auto", **overrides: Any
) -> AlignmentArtifact:
    models = http_models(server)
    return optimize(
        QUERIES,
        responder=models["responder"],
        judge=models["judge"],
        rewriter=models["rewriter"],
        config=DRPOConfig(**{**SEQUENTIAL, "structured_output_method": method, **overrides}),
        run_id=RUN_ID,
    )


def has_limits(node: Any) -> bool:
    """A string cap or a large item cap anywhere in ``node`` (what grammar compilers choke on)."""
    if isinstance(node, dict):
        return "maxLength" in node or node.get("maxItems", 0) > 16 or any(map(has_limits, node.values()))
    return isinstance(node, list) and any(map(has_limits, node))


@pytest.mark.parametrize(
    ("rejects", "expected"),
    [
        ((), "json_schema"),  # OpenAI, vLLM
        (("json_schema",), "function_calling"),  # llama-cpp-python's server
        (("json_schema", "tools"), "json_mode"),  # a server with neither
        (("json_schema", "tools", "json_object"), "text"),
    ],
)
def test_auto_discovers_what_the_server_accepts_and_remembers_it(
    baseline: dict[str, Any], rejects: tuple[Mechanism, ...], expected: str
) -> None:
    with FakeOpenAIServer(rejects=rejects, dies_on_length_limits=True) as server:
        artifact = run(server)
    assert summary(artifact) == baseline
    assert artifact.structured_output_methods == {"judge": expected, "rewriter": expected}
    # Each refused mechanism was tried once per model (judge, rewriter), plus the client's 2
    # retries of a 500; afterwards every request used the method found.
    retries = 1 + 2
    rejected = [r for r in server.requests if r.fault == "rejected"]
    expected_rejected = sum((retries if m == "json_schema" else 1) for m in rejects) * 2
    assert len(rejected) == expected_rejected
    assert not any(r.fault == "died" for r in server.requests), "a schema with length limits was sent"
    structured = [r.body for r in server.requests if r.role in ("judge", "rewriter") and r.fault is None]
    # Schemas the server compiles carry no limits (the one in the prompt may: it is only read).
    assert structured and not any(has_limits([b.get("tools"), b.get("response_format")]) for b in structured)
    if expected == "function_calling":
        assert all(b["tools"] and "response_format" not in b for b in structured)
    if expected == "json_mode":
        # JSON mode with the schema in the prompt, and beside json_object for llama.cpp's grammar.
        assert all(b["response_format"]["type"] == "json_object" and "tools" not in b for b in structured)
        assert all(
            b["response_format"]["schema"]["title"]
            in {"AspectSelection", "AnswerEvaluation", "PromptProposals"}
            for b in structured
        )
    if expected in ("json_mode", "text"):
        assert all("JSON schema" in b["messages"][-1]["content"] for b in structured)
    if expected == "text":
        assert not any("response_format" in b or "tools" in b for b in structured)


def test_every_request_carries_its_role_reply_cap() -> None:
    with FakeOpenAIServer.llama_cpp() as server:
        artifact = run(server, role_max_tokens={"judge": 300})
    assert artifact.config["role_max_tokens"] == {**DEFAULT_ROLE_MAX_TOKENS, "judge": 300}
    caps = {"responder": DEFAULT_ROLE_MAX_TOKENS["responder"], "judge": 300, "rewriter": 2048}
    for role, cap in caps.items():
        bodies = server.bodies(role)
        assert bodies
        # langchain-openai sends max_completion_tokens; llama.cpp's server reads only max_tokens.
        assert all(b["max_completion_tokens"] == cap and b["max_tokens"] == cap for b in bodies), role


def test_a_forced_method_is_not_replaced(tmp_path: Path) -> None:
    # Forcing json_schema against llama.cpp: the 500s are the run's failure, no silent fallback.
    with FakeOpenAIServer.llama_cpp() as server, pytest.raises(DRPOError, match="could not be evaluated"):
        run(server, "json_schema")
    assert server.requests and all(
        b.get("response_format", {}).get("type") == "json_schema" for b in server.bodies("judge")
    )


def test_per_role_methods_are_forced_separately(baseline: dict[str, Any]) -> None:
    with FakeOpenAIServer.llama_cpp() as server:
        artifact = run(server, role_structured_output={"judge": "text"})
    assert summary(artifact) == baseline
    assert artifact.structured_output_methods == {"judge": "text", "rewriter": "function_calling"}
    assert not any("tools" in b or "response_format" in b for b in server.bodies("judge"))


def test_other_server_errors_are_not_taken_for_a_refused_method() -> None:
    with FakeOpenAIServer() as server:
        server.add_fault(http_error(500, role="judge", times=10))
        model = http_models(server, max_retries=0)["judge"]
        methods = StructuredMethods()
        with pytest.raises(openai.InternalServerError):
            run_plan(plan_structured(model, AnswerEvaluation, [HumanMessage("grade")], methods=methods))
    assert server.count("judge") == 1 and methods.as_dict() == {}


def rejection(status: int, message: str) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, request=request, json={"error": {"message": message}})
    cls = {400: openai.BadRequestError, 401: openai.AuthenticationError, 422: openai.UnprocessableEntityError}
    return cls.get(status, openai.InternalServerError)(message, response=response, body={"message": message})


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (rejection(500, "response_format.type: Input should be 'text' or 'json_object'"), True),
        (rejection(400, "model x does not support tools"), True),
        (rejection(400, '"auto" tool choice requires --enable-auto-tool-choice'), True),
        (rejection(422, "json_schema is not supported"), True),
        (rejection(500, "CUDA out of memory"), False),
        (rejection(400, "maximum context length exceeded"), False),
        (rejection(401, "invalid api key for tools"), False),
        (ConnectionError("tools"), False),
    ],
)
def test_what_counts_as_a_refused_method(error: BaseException, refused: bool) -> None:
    assert is_method_rejection(error) is refused


def test_schemas_sent_to_providers_have_no_length_limits() -> None:
    for schema in (AnswerEvaluation, PromptProposals):
        sent = provider_schema(schema)
        assert not has_limits(sent) and "$defs" not in json.dumps(sent)
        assert sent["required"] == schema.model_json_schema()["required"]
    # The pydantic schema still validates lengths locally (an over-long reply is re-asked).
    assert "maxLength" in json.dumps(PromptProposals.model_json_schema())


def test_reply_caps_apply_only_to_models_without_their_own() -> None:
    sandbox = sandbox_models(0)["judge"]
    assert with_output_limit(sandbox, 100) is sandbox
    remote = ChatOpenAI(model="m", base_url="http://127.0.0.1:1/v1", api_key="k")  # type: ignore[arg-type]
    capped = with_output_limit(remote, 100)
    assert capped.max_tokens == 100 and capped.extra_body == {"max_tokens": 100}
    assert remote.max_tokens is None  # a copy; the caller's model is unchanged
    own = ChatOpenAI(model="m", base_url="http://127.0.0.1:1/v1", api_key="k", max_tokens=7)  # type: ignore[arg-type]
    assert with_output_limit(own, 100) is own
    official = with_output_limit(ChatOpenAI(model="gpt-4o-mini", api_key="k"), 100)  # type: ignore[arg-type]
    assert official.max_tokens == 100 and official.extra_body is None


def test_old_artifacts_load_without_the_methods_field(tmp_path: Path) -> None:
    artifact = optimize(QUERIES, responder="sandbox", judge="sandbox", config=DRPOConfig(**SEQUENTIAL))
    assert artifact.structured_output_methods == {"judge": "function_calling", "rewriter": "function_calling"}
    data = artifact.model_dump(mode="json")
    del data["structured_output_methods"]
    assert AlignmentArtifact.model_validate(data).structured_output_methods == {}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        # The case: a real server's rewriter with a sandbox judge, both on the text path.
        (["--structured-output", "text"], {"judge": "text", "rewriter": "text"}),
        (["--judge-structured-output", "json_mode"], {"judge": "json_mode", "rewriter": "function_calling"}),
    ],
)
def test_cli_forces_methods_and_mixes_real_and_sandbox_roles(
    tmp_path: Path, flags: list[str], expected: dict[str, str]
) -> None:
    with FakeOpenAIServer.llama_cpp() as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "drpo_agents",
                "optimize",
                "--responder",
                "openai:sandbox-responder",
                "--judge",
                "sandbox",
                "--rewriter",
                "openai:sandbox-rewriter",
                "--base-url",
                server.base_url,
                "--depth",
                "1",
                "--run-dir",
                "run",
                "--quiet",
                *flags,
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "LANGSMITH_TRACING": "false", "OPENAI_API_KEY": "sk-test"},
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    artifact = AlignmentArtifact.load(tmp_path / "run" / "artifact.json")
    assert artifact.structured_output_methods == expected
    assert not any(lvl.failures for lvl in artifact.levels)
    assert len(artifact.candidates) > 1 and artifact.usage["rewriter"].calls > 0


def test_a_resumed_run_starts_from_the_methods_it_found(tmp_path: Path) -> None:
    # Stopped by its token budget after level 0, then resumed in a fresh graph (as a new process
    # would build it): the checkpoint's methods seed the new memory, so nothing is refused again.
    from drpo_agents import resume

    settings = {**SEQUENTIAL, "depth": 3}
    with FakeOpenAIServer.llama_cpp() as server:
        models = http_models(server)
        stopped = optimize(
            QUERIES,
            config=DRPOConfig(**settings, max_tokens_budget=1),
            run_id=RUN_ID,
            run_dir=tmp_path,
            **models,
        )
        assert "token budget reached" in stopped.notes[-1]
        assert stopped.structured_output_methods == {"judge": "function_calling"}
        before = len(server.requests)
        resumed = resume(tmp_path, config_overrides={"max_tokens_budget": None}, **http_models(server))
        after = server.requests[before:]
    assert len(resumed.levels) > len(stopped.levels)
    assert resumed.structured_output_methods == {"judge": "function_calling", "rewriter": "function_calling"}
    # The judge's method came from the checkpoint; only the rewriter (new in this part) was refused.
    refused = {r.role for r in after if r.fault == "rejected"}
    assert refused == {"rewriter"}
