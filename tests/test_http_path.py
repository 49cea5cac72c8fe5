"""The real model path: DRPO through ``ChatOpenAI`` against a local OpenAI-compatible server.

The server (``tests/openai_server.py``) is backed by the sandbox models, so a run over HTTP must
find exactly what an in-process sandbox run finds on the same seed. Faults are injected per test:
each is either absorbed (the openai client retries HTTP errors, resets and timeouts; the
structured layer re-asks invalid output), leaving the result unchanged, or recorded as a failed
evaluation or rewrite in the artifact while the run finishes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_openai import ChatOpenAI

from drpo_agents import AlignmentArtifact, DRPOConfig, create_drpo_graph, optimize
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.datasets import load_training_queries

from .openai_server import FakeOpenAIServer, cut, edit_reply, html_page, http_error, reset, slow, truncated

pytestmark = [
    pytest.mark.server,
    # langchain-openai's json_schema path dumps openai's parsed response with a pydantic warning.
    pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning"),
]

API_KEY = "sk-test-SECRET123"
RUN_ID = "http-run"
# Queries of 8+ words, so a rewriter that copies one is caught (the check needs an 8-word run).
QUERIES = [q for q in load_training_queries() if q["id"] in {"q002", "q005", "q006", "q008"}]
SETTINGS: dict[str, Any] = {"depth": 2, "beam_size": 2, "n_actions": 2, "max_depth_increase": 0, "seed": 0}


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The openai client's exponential backoff (used when no Retry-After is sent) starts at 0.5 s:
    make it 2 ms so retried resets and timeouts stay fast. Retry headers are honoured as sent."""
    monkeypatch.setattr("openai._base_client.INITIAL_RETRY_DELAY", 0.002, raising=False)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(seed=0) as fake:
        yield fake


def http_models(
    server: FakeOpenAIServer,
    *,
    timeout: float = 5.0,
    max_retries: int = 2,
    default_clients: bool = False,
    **kwargs: Any,
) -> dict[str, ChatOpenAI]:
    """ChatOpenAI for each role. Unless ``default_clients``, each model gets its own HTTP clients
    without certificate loading (0.3 s per new base URL otherwise; the server is plain HTTP)."""
    if not default_clients:
        kwargs |= {
            "http_client": openai.DefaultHttpxClient(verify=False),
            "http_async_client": openai.DefaultAsyncHttpxClient(verify=False),
        }
    return {
        role: ChatOpenAI(
            model=f"sandbox-{role}",
            base_url=server.base_url,
            api_key=API_KEY,  # type: ignore[arg-type]
            timeout=timeout,
            max_retries=max_retries,
            **kwargs,
        )
        for role in ("responder", "judge", "rewriter")
    }


def config(method: StructuredOutputMethod = "auto", **overrides: Any) -> DRPOConfig:
    return DRPOConfig(**{**SETTINGS, "structured_output_method": method, **overrides})


def run_http(
    server: FakeOpenAIServer,
    method: StructuredOutputMethod = "auto",
    run_dir: Path | None = None,
    client: dict[str, Any] | None = None,
    **overrides: Any,
) -> AlignmentArtifact:
    models = http_models(server, **(client or {}))
    return optimize(
        QUERIES,
        responder=models["responder"],
        judge=models["judge"],
        rewriter=models["rewriter"],
        config=config(method, **overrides),
        run_id=RUN_ID,
        run_dir=run_dir,
    )


def summary(artifact: AlignmentArtifact) -> dict[str, Any]:
    """What the search found, without the model names and usage (which differ by transport)."""
    return {
        "best": (artifact.best_candidate_id, artifact.system_prompt),
        "candidates": [(c.id, c.parent_id, c.prompt, c.rewards) for c in artifact.candidates],
        "evaluations": [
            (e.level, e.candidate_id, e.query_id, e.answer, e.reward) for e in artifact.evaluations
        ],
        "beams": [lvl.beam for lvl in artifact.levels],
    }


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    """The same search with the in-process sandbox models."""
    artifact = optimize(QUERIES, responder="sandbox", judge="sandbox", config=config(), run_id=RUN_ID)
    assert not any(e.error for e in artifact.evaluations)
    assert len(artifact.candidates) > 3, "the baseline must actually search"
    return summary(artifact)


# Chroma's HNSW sidecar files (length.bin, ...) are written from malloc'd buffers at full capacity,
# so they can hold stale process memory, an HTTP header with the key included: an upstream bug
# (chroma-core/chroma#7688) that nothing we write can cause or prevent. Every file we write is checked.
CHROMA_HNSW_FILES = {"header.bin", "data_level0.bin", "length.bin", "link_lists.bin"}


def assert_no_secret(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = [p for p in run_dir.rglob("*") if p.is_file() and p.name not in CHROMA_HNSW_FILES]
    assert {p.name for p in files} >= {"artifact.json", "config.json", "checkpoints.sqlite", "chroma.sqlite3"}
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), f"API key found in {path.name}"
    assert API_KEY not in caplog.text


def failed_evaluations(artifact: AlignmentArtifact) -> list[str]:
    return [e.error for e in artifact.evaluations if e.error]


def level_failures(artifact: AlignmentArtifact) -> list[str]:
    return [str(f) for lvl in artifact.levels for f in lvl.failures]


def query_in(messages: list[BaseMessage]) -> str:
    text = str(next(m.content for m in reversed(messages) if isinstance(m, HumanMessage)))
    match = re.search(r"<query>\s*(.*?)\s*</query>", text, re.S)
    assert match
    return match.group(1)


# -- the clean path ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["auto", "function_calling", "json_schema"])
def test_http_run_matches_in_process_run_counts_server_usage_and_keeps_no_secret(
    server: FakeOpenAIServer,
    baseline: dict[str, Any],
    method: StructuredOutputMethod,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    artifact = run_http(server, method, run_dir=tmp_path, client={"default_clients": True})

    assert summary(artifact) == baseline
    assert AlignmentArtifact.load(tmp_path / "artifact.json") == artifact
    # Tokens are the server's usage numbers, role by role, and every request was answered.
    assert {r: u.model_dump() for r, u in artifact.usage.items()} == server.usage_by_role()
    assert all(r.usage is not None for r in server.requests)
    # The key was sent in the header only, and went nowhere else.
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in server.requests)
    assert not any(API_KEY.encode() in r.raw for r in server.requests)
    assert_no_secret(tmp_path, caplog)
    assert artifact.models["judge"].endswith(f"sandbox-judge@{server.base_url}")
    # The structured-output mechanism is the one asked for (auto = langchain-openai's json_schema).
    structured = [r.body for r in server.requests if r.role in ("judge", "rewriter")]
    if method == "function_calling":
        assert all(b["tools"] and b["tool_choice"]["type"] == "function" for b in structured)
    else:
        assert all(b["response_format"]["type"] == "json_schema" and "tools" not in b for b in structured)


def test_sync_graph_over_http_matches(server: FakeOpenAIServer) -> None:
    # The sync driver (graph.invoke) uses openai's sync client; one 429 on the way.
    server.add_fault(http_error(429, {"retry-after-ms": "1"}, role="responder"))

    def run_graph(responder: Any, judge: Any, rewriter: Any) -> dict[str, Any]:
        graph = create_drpo_graph(responder, judge, rewriter, config=config())
        out = graph.compile().invoke({"queries": QUERIES, "run_id": RUN_ID})
        return summary(AlignmentArtifact.model_validate(out["artifact"]))

    models = http_models(server, default_clients=True)
    over_http = run_graph(models["responder"], models["judge"], models["rewriter"])
    assert over_http == run_graph("sandbox", "sandbox", "sandbox")
    assert [r.fault for r in server.requests].count("status") == 1


def test_optimize_twice_with_the_same_models(server: FakeOpenAIServer) -> None:
    models = http_models(server, default_clients=True)
    for _ in range(2):
        optimize(
            QUERIES, responder=models["responder"], judge=models["judge"], config=config(), run_id=RUN_ID
        )


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_html_page_instead_of_json_is_recorded(
    server: FakeOpenAIServer, method: StructuredOutputMethod
) -> None:
    server.add_fault(html_page(role="judge", step="score", after=1))
    artifact = run_http(server, method, max_concurrency=1)
    assert len(failed_evaluations(artifact)) == 1


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_streaming_clients_get_server_sent_events(
    server: FakeOpenAIServer, baseline: dict[str, Any], method: StructuredOutputMethod
) -> None:
    artifact = run_http(server, method, client={"streaming": True, "stream_usage": True})
    assert summary(artifact) == baseline
    assert all(r.body.get("stream") for r in server.requests if r.role == "responder")
    assert {r: u.model_dump() for r, u in artifact.usage.items()} == server.usage_by_role()


def test_plain_chat_stream_arrives_in_chunks(server: FakeOpenAIServer) -> None:
    model = http_models(server, stream_usage=True)["responder"]
    chunks = list(model.stream("How can I become more confident when speaking in meetings at work?"))
    assert len(chunks) > 5
    text = "".join(str(c.content) for c in chunks)
    assert text.startswith("Here is an overview of")
    assert sum((c.usage_metadata or {}).get("output_tokens", 0) for c in chunks) == len(text) // 4


# -- faults that are absorbed: the result is the in-process result ------------------------------

ABSORBED = {
    # openai client retries (max_retries=2)
    "429 retry-after-ms": lambda: http_error(429, {"retry-after-ms": "20"}, role="judge", step="score"),
    "429 Retry-After: 0 (exponential backoff)": lambda: http_error(
        429, {"Retry-After": "0"}, role="responder"
    ),
    "500 twice": lambda: http_error(500, role="rewriter", times=2),
    "503": lambda: http_error(503, role="judge", step="select_aspects"),
    "connection reset": lambda: reset(role="judge", step="score"),
    "connection closed mid-body": lambda: cut(role="responder"),
    "client timeout": lambda: slow(role="rewriter"),
}


@pytest.mark.parametrize("name", list(ABSORBED))
def test_transport_faults_are_retried_by_the_client(
    server: FakeOpenAIServer, baseline: dict[str, Any], name: str
) -> None:
    fault = ABSORBED[name]()
    server.add_fault(fault)
    artifact = run_http(server, client={"timeout": 0.5})
    assert fault.applied == fault.times, "the fault must have been hit"
    assert summary(artifact) == baseline
    # Each failed attempt was retried once more, and only answered requests count as usage.
    answered = server.usage_by_role()
    assert len(server.requests) == sum(u["calls"] for u in answered.values()) + fault.times
    assert {r: u.model_dump() for r, u in artifact.usage.items()} == answered
    if name == "429 retry-after-ms":
        hit = next(i for i, r in enumerate(server.requests) if r.fault)
        retry = next(r for r in server.requests[hit + 1 :] if r.step == "score")
        assert retry.at - server.requests[hit].at >= 0.02  # retry-after-ms honoured


def score_of(value: Any) -> Any:
    def edit(reply: dict[str, Any], _: list[BaseMessage]) -> dict[str, Any]:
        return {"scores": [{**s, "score": value(s["score"])} for s in reply["scores"]]}

    return edit


def drop_last_aspect(reply: dict[str, Any], _: list[BaseMessage]) -> dict[str, Any]:
    return {"scores": reply["scores"][:-1]}


def empty_prompt(reply: dict[str, Any], _: list[BaseMessage]) -> dict[str, Any]:
    return {"proposals": [{**reply["proposals"][0], "new_prompt": ""}, *reply["proposals"][1:]]}


def echo_query(reply: dict[str, Any], messages: list[BaseMessage]) -> dict[str, Any]:
    query = query_in(messages)
    return {"proposals": [{**p, "new_prompt": f"{p['new_prompt']}\n- {query}"} for p in reply["proposals"]]}


REASKED = {
    "judge replies in prose": lambda: edit_reply(
        lambda *_: "The answer looks good to me, 4 out of 5.", role="judge", step="score"
    ),
    "aspect selection in prose": lambda: edit_reply(
        lambda *_: "Helpfulness and clarity.", role="judge", step="select_aspects"
    ),
    "judge misses an aspect": lambda: edit_reply(drop_last_aspect, role="judge", step="score"),
    "score 7": lambda: edit_reply(score_of(lambda _: 7), role="judge", step="score"),
    "empty rewritten prompt": lambda: edit_reply(empty_prompt, role="rewriter"),
    "rewriter echoes the query": lambda: edit_reply(echo_query, role="rewriter"),
}


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
@pytest.mark.parametrize("name", list(REASKED))
def test_invalid_output_is_reasked(
    server: FakeOpenAIServer, baseline: dict[str, Any], name: str, method: StructuredOutputMethod
) -> None:
    fault = REASKED[name]()
    server.add_fault(fault)
    artifact = run_http(server, method)
    assert fault.applied == 1
    assert summary(artifact) == baseline
    reasks = [r for r in server.requests if "could not be used" in str(r.body["messages"][-1]["content"])]
    assert len(reasks) == 1 and reasks[0].role == fault.role


def test_one_echoing_proposal_is_dropped_and_the_others_kept(
    server: FakeOpenAIServer, baseline: dict[str, Any]
) -> None:
    def echo_first(reply: dict[str, Any], messages: list[BaseMessage]) -> dict[str, Any]:
        first = {**reply["proposals"][0], "new_prompt": f"Answer: {query_in(messages)}"}
        return {"proposals": [first, *reply["proposals"][1:]]}

    server.add_fault(edit_reply(echo_first, role="rewriter"))
    artifact = run_http(server, "function_calling")
    assert not any("could not be used" in str(r.body["messages"][-1]["content"]) for r in server.requests)
    queries = [q["query"] for q in QUERIES]
    assert not any(q in c.prompt for c in artifact.candidates for q in queries)
    # Level 1 has one child fewer than the baseline, and the artifact says why.
    assert len(artifact.candidates) < len(baseline["candidates"])
    assert any("copies text from a training query" in f for f in level_failures(artifact))


def test_scores_written_as_fractions_are_accepted_without_reasking(
    server: FakeOpenAIServer, baseline: dict[str, Any]
) -> None:
    server.add_fault(edit_reply(score_of(lambda s: f"{s}/5"), role="judge", step="score", times=1000))
    artifact = run_http(server, "function_calling")
    assert summary(artifact) == baseline
    assert server.count("judge", "score") == len(artifact.evaluations)  # no re-asks


# -- faults that are recorded: the run finishes, the artifact says what failed -----------------

# Level 0 evaluates only the initial prompt (it must succeed); `after` spares its requests.
# max_concurrency=1 makes consecutive requests belong to one task; the client retries once.
# Faults in structured output run under both methods; transport faults under "auto" only.
BOTH = ("function_calling", "json_schema")
RECORDED = {
    "500 persists": (
        lambda: http_error(500, role="responder", after=1, times=2),
        "evaluation",
        "Error code: 500",
        ("auto",),
    ),
    "429 persists": (
        lambda: http_error(429, {"retry-after-ms": "1"}, role="judge", step="score", after=1, times=2),
        "evaluation",
        "Error code: 429",
        ("auto",),
    ),
    "reset persists": (
        lambda: reset(role="responder", after=1, times=2),
        "evaluation",
        "Connection error",
        ("auto",),
    ),
    "timeout persists": (
        lambda: slow(role="judge", step="score", after=1, times=2),
        "evaluation",
        "Request timed out",
        ("auto",),
    ),
    "truncated body (responder)": (
        lambda: truncated(role="responder", after=1),
        "evaluation",
        "JSONDecodeError",
        ("auto",),
    ),
    "truncated body (judge)": (
        lambda: truncated(role="judge", step="score", after=1),
        "evaluation",
        "JSONDecodeError",
        BOTH,
    ),
    "truncated body (rewriter)": (lambda: truncated(role="rewriter"), "rewrite", "JSONDecodeError", BOTH),
    "judge prose persists": (
        lambda: edit_reply(lambda *_: "Looks fine.", role="judge", step="score", after=1, times=3),
        "evaluation",
        "StructuredOutputError: AnswerEvaluation: no valid reply after 3 attempt(s)",
        BOTH,
    ),
    "score 7 persists": (
        lambda: edit_reply(score_of(lambda _: 7), role="judge", step="score", after=1, times=3),
        "evaluation",
        "score must be between 1 and 5, got 7",
        BOTH,
    ),
    "missing aspect persists": (
        lambda: edit_reply(drop_last_aspect, role="judge", step="score", after=1, times=3),
        "evaluation",
        "missing scores for aspect(s)",
        BOTH,
    ),
    "empty prompt persists": (
        lambda: edit_reply(empty_prompt, role="rewriter", times=3),
        "rewrite",
        "new_prompt",
        BOTH,
    ),
    "echoed query persists": (
        lambda: edit_reply(echo_query, role="rewriter", times=3),
        "rewrite",
        "copies text from a training query",
        BOTH,
    ),
    "aspect selection fails": (
        lambda: edit_reply(lambda *_: "Helpfulness.", role="judge", step="select_aspects", after=1, times=3),
        "select_aspects",
        "StructuredOutputError: AspectSelection",
        BOTH,
    ),
}
# These also write a run directory, scanned for the key (their error texts land in the artifact).
WITH_RUN_DIR = {"500 persists", "judge prose persists"}


@pytest.mark.parametrize(
    ("name", "method"), [(name, method) for name, spec in RECORDED.items() for method in spec[3]]
)
def test_unrecoverable_faults_are_recorded_and_the_run_finishes(
    server: FakeOpenAIServer,
    baseline: dict[str, Any],
    name: str,
    method: StructuredOutputMethod,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make, where, message, _ = RECORDED[name]
    fault = make()
    server.add_fault(fault)
    run_dir = tmp_path if name in WITH_RUN_DIR else None
    if run_dir is not None:
        caplog.set_level(logging.DEBUG)
    artifact = run_http(server, method, run_dir, client={"timeout": 0.3, "max_retries": 1}, max_concurrency=1)
    assert fault.applied == fault.times

    failures = level_failures(artifact)
    if where == "evaluation":
        # One level-1 evaluation failed with its reason; what finished before and beside it is kept,
        # and the failed candidate is left out of selection.
        (failed,) = [e for e in artifact.evaluations if e.error]
        assert failed.level == 1 and message in (failed.error or "")
        assert any(message in str(f) for f in artifact.levels[1].failures)
        done = [e for e in summary(artifact)["evaluations"] if e[0] <= 1 and e[1] != failed.candidate_id]
        assert done == [e for e in baseline["evaluations"] if e[0] <= 1 and e[1] != failed.candidate_id]
        assert len(done) == 2
        assert failed.candidate_id not in artifact.levels[1].beam
    elif where == "rewrite":
        (failure,) = [f for f in failures if f.startswith("rewrite")]
        assert message in failure
        assert not failed_evaluations(artifact)
    else:  # aspect selection falls back to default aspects, and says so
        (failure,) = failures
        assert failure.startswith("select_aspects") and message in failure
        assert not failed_evaluations(artifact)
    assert artifact.levels[-1].level == SETTINGS["depth"], "the run went to the end"
    assert API_KEY not in artifact.model_dump_json()
    if run_dir is not None:
        assert_no_secret(run_dir, caplog)
