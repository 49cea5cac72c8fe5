"""Traces read as the search they are: run names, tags and drpo_* metadata on every node and model
call, collected locally (LangChain run collector, JSON-lines tracer, OpenTelemetry in-memory
exporter). Nothing here reaches the network or LangSmith."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_core.tracers.schemas import Run

from drpo_agents import AlignmentArtifact, DRPOConfig, create_drpo_graph, load_training_queries, optimize
from drpo_agents.memory import InMemoryCritiqueMemory
from drpo_agents.tracing import (
    REDACTED,
    TRACE_FILE,
    JsonlTracer,
    instrument_opentelemetry,
    iter_tree,
    read_trace,
    uninstrument_opentelemetry,
)

ROLES = {"responder", "judge", "rewriter"}
NODES = {
    "prepare",
    "select_aspects",
    "dispatch_evaluations",
    "evaluate",
    "select_beam",
    "next_level",
    "rewrite",
    "finalize",
}
# Each agent step's run, the node it runs in, and the task ids it is tagged with.
STEPS = {
    "drpo_select_aspects": ("select_aspects", {"drpo_query_id", "drpo_level"}),
    "drpo_respond": ("evaluate", {"drpo_candidate_id", "drpo_query_id", "drpo_level"}),
    "drpo_score": ("evaluate", {"drpo_candidate_id", "drpo_query_id", "drpo_level"}),
    "drpo_rewrite_prompt": ("rewrite", {"drpo_parent_id", "drpo_level"}),
}
CONFIG = DRPOConfig(depth=2, beam_size=2, n_actions=2)


def _walk(run: Run, ancestors: tuple[Run, ...] = ()) -> Iterator[tuple[Run, tuple[Run, ...]]]:
    yield run, ancestors
    for child in run.child_runs:
        yield from _walk(child, (*ancestors, run))


def _metadata(run: Run) -> dict[str, Any]:
    return dict((run.extra or {}).get("metadata") or {})


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[AlignmentArtifact, Run, Path]:
    """One sandbox run traced by a run collector and a JSON-lines tracer in its run directory."""
    run_dir = tmp_path_factory.mktemp("traced-run")
    collector = RunCollectorCallbackHandler()
    artifact = optimize(
        load_training_queries()[:6],
        responder="sandbox",
        judge="sandbox",
        config=CONFIG,
        run_dir=run_dir,
        memory=InMemoryCritiqueMemory(),
        callbacks=[collector, JsonlTracer(run_dir / TRACE_FILE)],
    )
    assert len(collector.traced_runs) == 1
    return artifact, collector.traced_runs[0], run_dir


# -- run names, tags and metadata (any LangChain tracer, LangSmith included, sees these) -----------


def test_the_trace_is_one_drpo_optimize_run_with_the_graph_nodes_under_it(traced: Any) -> None:
    artifact, root, _ = traced
    assert root.name == "drpo_optimize"
    assert root.parent_run_id is None
    assert _metadata(root)["drpo_run_id"] == artifact.run_id
    assert {child.name for child in root.child_runs} >= NODES
    # Every run of the tree can be found by the run id (LangChain metadata is inherited).
    assert all(_metadata(run)["drpo_run_id"] == artifact.run_id for run, _ in _walk(root))


def test_every_model_call_carries_its_role_run_id_and_level(traced: Any) -> None:
    artifact, root, _ = traced
    model_runs = [run for run, _ in _walk(root) if run.run_type in ("llm", "chat_model")]
    assert {_metadata(run)["drpo_role"] for run in model_runs} == ROLES
    for run in model_runs:
        metadata = _metadata(run)
        assert metadata["drpo_role"] in ROLES, run.name
        assert metadata["drpo_run_id"] == artifact.run_id
        assert isinstance(metadata["drpo_level"], int)
        assert metadata["drpo_step"] in {"select_aspects", "respond", "score", "rewrite_prompt"}
        assert {"drpo", f"drpo:{metadata['drpo_role']}"} <= set(run.tags or [])


def test_agent_steps_are_named_placed_and_tagged_with_their_task_ids(traced: Any) -> None:
    _, root, _ = traced
    seen: set[str] = set()
    for run, ancestors in _walk(root):
        if run.name not in STEPS:
            continue
        seen.add(run.name)
        node, keys = STEPS[run.name]
        assert node in {a.name for a in ancestors}, f"{run.name} outside {node}"
        metadata = _metadata(run)
        assert keys <= metadata.keys(), (run.name, metadata)
        assert metadata["drpo_step"] == run.name.removeprefix("drpo_")
    assert seen == set(STEPS)


def test_evaluation_metadata_matches_the_artifact(traced: Any) -> None:
    """The ids on each respond/score call are those of an evaluation the artifact records."""
    artifact, root, _ = traced
    recorded = {(e.candidate_id, e.query_id, e.level) for e in artifact.evaluations}
    for name in ("drpo_respond", "drpo_score"):
        traced_ids = [
            (m["drpo_candidate_id"], m["drpo_query_id"], m["drpo_level"])
            for m in (_metadata(run) for run, _ in _walk(root) if run.name == name)
        ]
        assert sorted(traced_ids) == sorted(recorded), name
    selections = {
        _metadata(run)["drpo_query_id"] for run, _ in _walk(root) if run.name == "drpo_select_aspects"
    }
    assert selections == {e.query_id for e in artifact.evaluations}


def test_icl_stage_calls_carry_role_run_id_and_example_id() -> None:
    collector = RunCollectorCallbackHandler()
    artifact = optimize(
        load_training_queries()[:4],
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=1, beam_size=2, n_actions=2, icl_iters=1),
        memory=InMemoryCritiqueMemory(),
        callbacks=[collector],
    )
    (root,) = collector.traced_runs
    stage = [run for run, ancestors in _walk(root) if "icl_stage" in {a.name for a in ancestors}]
    model_runs = [run for run in stage if run.run_type in ("llm", "chat_model")]
    assert model_runs
    for run in model_runs:
        metadata = _metadata(run)
        assert metadata["drpo_role"] in {"judge", "rewriter"}
        assert metadata["drpo_run_id"] == artifact.run_id
        assert metadata["drpo_icl_example_id"]


def test_graph_used_directly_tags_model_calls_with_the_run_id() -> None:
    """Without optimize() (LangGraph Server, a user's own compile) the run id comes from the state."""
    collector = RunCollectorCallbackHandler()
    graph = create_drpo_graph("sandbox", "sandbox", config=DRPOConfig(depth=1, beam_size=2, n_actions=2))
    graph.compile().invoke(
        {"queries": load_training_queries()[:3], "run_id": "direct-run"}, {"callbacks": [collector]}
    )
    (root,) = collector.traced_runs
    model_runs = [run for run, _ in _walk(root) if run.run_type in ("llm", "chat_model")]
    assert model_runs
    assert {_metadata(run).get("drpo_run_id") for run in model_runs} == {"direct-run"}


def test_memory_recall_is_tagged(traced: Any) -> None:
    _, root, _ = traced
    recalls = [run for run, _ in _walk(root) if run.name == "drpo_recall_critiques"]
    assert recalls
    for run in recalls:
        assert _metadata(run)["drpo_role"] == "memory"
        assert "drpo:memory" in (run.tags or [])


# -- the JSON-lines tracer -----------------------------------------------------------------------


def test_jsonl_trace_holds_the_whole_nested_run_tree(traced: Any) -> None:
    artifact, root, run_dir = traced
    records = read_trace(run_dir / TRACE_FILE)
    collected = list(_walk(root))
    assert len(records) == len(collected)
    ids = {r["id"] for r in records}
    assert len(ids) == len(records)
    assert {r["trace_id"] for r in records} == {str(root.id)}
    # Children finish first: the root is the last line, and every other parent is in the file.
    assert records[-1]["name"] == "drpo_optimize" and records[-1]["parent_id"] is None
    assert all(r["parent_id"] in ids for r in records[:-1])
    assert all(r["status"] == "ok" and r["end_time"] >= r["start_time"] for r in records)

    tree = list(iter_tree(records))
    assert len(tree) == len(records)
    by_id = {r["id"]: r for r in records}
    for depth, record in tree:
        if record["name"] == "drpo_respond":
            chain, parent = [], record["parent_id"]
            while parent:
                chain.append(by_id[parent]["name"])
                parent = by_id[parent]["parent_id"]
            assert "evaluate" in chain and chain[-1] == "drpo_optimize"
            assert depth == len(chain)
            assert record["metadata"]["drpo_role"] == "responder"
            assert record["metadata"]["drpo_run_id"] == artifact.run_id
            assert record["inputs"] and record["outputs"]


def test_jsonl_token_usage_adds_up_to_the_artifacts(traced: Any) -> None:
    artifact, _, run_dir = traced
    totals: dict[str, list[int]] = {}
    for record in read_trace(run_dir / TRACE_FILE):
        if record["usage"] is not None:
            counts = totals.setdefault(record["metadata"]["drpo_role"], [0, 0, 0])
            counts[0] += 1
            counts[1] += record["usage"]["input_tokens"]
            counts[2] += record["usage"]["output_tokens"]
    assert totals == {
        role: [usage.calls, usage.input_tokens, usage.output_tokens] for role, usage in artifact.usage.items()
    }
    assert all(counts[1] > 0 for counts in totals.values())


def test_jsonl_tracer_never_writes_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_secret = "env-secret-value-0123456789"
    monkeypatch.setenv("SOMEPROVIDER_API_KEY", env_secret)
    shaped = "sk-" + "A1b2C3d4" * 4
    tracer = JsonlTracer(tmp_path / "nested" / TRACE_FILE)
    echo = RunnableLambda(lambda x: {"echo": x}, name="echo")
    echo.invoke(
        {"text": f"my key is {env_secret}", "api_key": "plain-value-in-inputs", "note": shaped},
        {"callbacks": [tracer], "metadata": {"openai_api_key": "metadata-key-value", "drpo_level": 3}},
    )
    text = (tmp_path / "nested" / TRACE_FILE).read_text(encoding="utf-8")
    for secret in (env_secret, "plain-value-in-inputs", shaped, "metadata-key-value"):
        assert secret not in text
    (record,) = read_trace(tmp_path / "nested" / TRACE_FILE)
    assert record["name"] == "echo" and record["metadata"]["drpo_level"] == 3
    assert record["metadata"]["openai_api_key"] == REDACTED
    assert record["inputs"]["api_key"] == REDACTED
    assert record["inputs"]["text"] == f"my key is {REDACTED}"


def test_jsonl_tracer_can_leave_out_or_truncate_inputs_and_outputs(tmp_path: Path) -> None:
    echo = RunnableLambda(lambda x: x, name="echo")
    echo.invoke("x" * 500, {"callbacks": [JsonlTracer(tmp_path / "short.jsonl", max_io_chars=100)]})
    echo.invoke("x" * 500, {"callbacks": [JsonlTracer(tmp_path / "none.jsonl", include_io=False)]})
    (short,) = read_trace(tmp_path / "short.jsonl")
    assert short["inputs"]["truncated"] is True and len(short["inputs"]["preview"]) == 100
    (bare,) = read_trace(tmp_path / "none.jsonl")
    assert "inputs" not in bare and "outputs" not in bare


# -- OpenTelemetry / OpenInference (optional extra) -----------------------------------------------


@pytest.fixture
def span_exporter() -> Iterator[Any]:
    pytest.importorskip("openinference.instrumentation.langchain", reason="needs drpo-agents[otel]")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert instrument_opentelemetry(provider) is provider
    try:
        yield exporter
    finally:
        uninstrument_opentelemetry()
        provider.shutdown()


def test_opentelemetry_spans_carry_run_names_and_drpo_attributes(span_exporter: Any) -> None:
    artifact = optimize(
        load_training_queries()[:6],
        responder="sandbox",
        judge="sandbox",
        config=CONFIG,
        memory=InMemoryCritiqueMemory(),
    )
    spans = span_exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert {"drpo_optimize", *NODES, *STEPS} <= names
    assert len({span.context.trace_id for span in spans}) == 1
    (root,) = [span for span in spans if span.parent is None]
    assert root.name == "drpo_optimize"
    by_span_id = {span.context.span_id: span for span in spans}

    def attributes(span: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        attrs = dict(span.attributes)
        return attrs, json.loads(attrs.get("metadata", "{}"))

    llm_spans = [span for span in spans if span.attributes.get("openinference.span.kind") == "LLM"]
    assert len(llm_spans) == sum(u.calls for u in artifact.usage.values())
    for span in llm_spans:
        attrs, metadata = attributes(span)
        assert metadata["drpo_role"] in ROLES
        assert metadata["drpo_run_id"] == artifact.run_id
        assert isinstance(metadata["drpo_level"], int)
        assert attrs["llm.token_count.total"] > 0
        assert attrs["session.id"] == artifact.run_id  # Phoenix groups the run as one session
    for span in spans:
        if span.name == "drpo_respond":
            _, metadata = attributes(span)
            assert {"drpo_candidate_id", "drpo_query_id"} <= metadata.keys()
            assert by_span_id[span.parent.span_id].name == "evaluate"

    # Uninstrumented, LangChain runs no longer produce spans.
    uninstrument_opentelemetry()
    count = len(span_exporter.get_finished_spans())
    RunnableLambda(lambda x: x).invoke(1)
    assert len(span_exporter.get_finished_spans()) == count


def test_default_provider_exports_over_otlp_http_to_the_endpoint() -> None:
    pytest.importorskip("openinference.instrumentation.langchain", reason="needs drpo-agents[otel]")
    provider = instrument_opentelemetry(endpoint="http://127.0.0.1:9/v1/traces", project_name="drpo-test")
    try:
        assert provider.resource.attributes["service.name"] == "drpo-test"
        assert provider.resource.attributes["openinference.project.name"] == "drpo-test"
    finally:
        uninstrument_opentelemetry()
        provider.shutdown()  # no span was made: nothing to send


def test_missing_otel_extra_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openinference.instrumentation.langchain", None)
    with pytest.raises(ImportError, match=r"pip install 'drpo-agents\[otel\]'"):
        instrument_opentelemetry()
    uninstrument_opentelemetry()  # a no-op without the extra


def test_jsonl_tracer_records_failed_runs(tmp_path: Path) -> None:
    def fail(_: Any) -> None:
        raise ValueError("model said no")

    with pytest.raises(ValueError):
        RunnableLambda(fail, name="failing").invoke(1, {"callbacks": [JsonlTracer(tmp_path / TRACE_FILE)]})
    (record,) = read_trace(tmp_path / TRACE_FILE)
    assert record["status"] == "error" and "model said no" in record["error"]
    assert record["end_time"] is not None and record["usage"] is None
