"""The trace file's compact values: long texts written once and restored by read_trace, graph
states summarized instead of serialized, model runs as messages, secrets still scrubbed."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from drpo_agents.tracing import REDACTED, JsonlTracer, read_trace
from drpo_agents.tracing.values import TEXT_KEY, TooLarge, TraceValues, resolve_texts

LONG = "A system prompt long enough to be shared between runs. " * 8  # 448 characters


def _raw(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_long_text_is_written_once_and_read_back_everywhere(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    tracer = JsonlTracer(trace)
    echo = RunnableLambda(lambda x: x, name="echo")
    for query in ("first", "second"):
        echo.invoke({"system": LONG, "query": query}, {"callbacks": [tracer]})

    assert trace.read_text(encoding="utf-8").count(LONG) == 1
    first, second = _raw(trace)
    # The first line defines the text where it appears; the next ones refer to it by id.
    definition = first["inputs"]["system"]
    assert set(definition) == {TEXT_KEY, "value"} and definition["value"] == LONG
    assert second["inputs"]["system"] == {TEXT_KEY: definition[TEXT_KEY]}
    assert second["outputs"]["system"] == {TEXT_KEY: definition[TEXT_KEY]}
    for record in read_trace(trace):
        assert record["inputs"]["system"] == record["outputs"]["system"] == LONG
    assert [r["inputs"]["query"] for r in read_trace(trace)] == ["first", "second"]


def test_a_resumed_run_defines_its_texts_again(tmp_path: Path) -> None:
    """A new tracer on the file (a resumed run, another process) does not rely on old lines."""
    trace = tmp_path / "trace.jsonl"
    echo = RunnableLambda(lambda x: x, name="echo")
    for _ in range(2):
        echo.invoke(LONG, {"callbacks": [JsonlTracer(trace)]})
    assert trace.read_text(encoding="utf-8").count(LONG) == 2
    assert [r["outputs"]["output"] for r in read_trace(trace)] == [LONG, LONG]


def test_a_text_first_seen_in_a_truncated_preview_is_defined_later(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    tracer = JsonlTracer(trace, max_io_chars=700)
    echo = RunnableLambda(lambda x: x, name="echo")
    # Two long texts pass the limit: cut to a preview, whose definitions are no use to a reader.
    echo.invoke([LONG, LONG + "!"], {"callbacks": [tracer]})
    echo.invoke(LONG, {"callbacks": [tracer]})
    cut, whole = read_trace(trace)
    assert cut["inputs"]["truncated"] is True
    assert whole["inputs"]["input"] == LONG and whole["outputs"]["output"] == LONG


def test_an_unknown_reference_stays_visible() -> None:
    assert resolve_texts({"a": {TEXT_KEY: "0123"}}, {}) == {"a": {TEXT_KEY: "0123"}}


def test_secrets_in_a_shared_text_are_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "env-secret-value-0123456789"
    monkeypatch.setenv("SOMEPROVIDER_API_KEY", secret)
    trace = tmp_path / "trace.jsonl"
    tracer = JsonlTracer(trace)
    text = f"{LONG} key {secret}"
    echo = RunnableLambda(lambda x: x, name="echo")
    for _ in range(2):
        echo.invoke({"text": text, "password": LONG}, {"callbacks": [tracer]})
    assert secret not in trace.read_text(encoding="utf-8")
    for record in read_trace(trace):
        assert record["inputs"] == {"text": f"{LONG} key {REDACTED}", "password": REDACTED}


class _State(TypedDict):
    run_id: str
    api_key: str
    items: Annotated[list[str], operator.add]


def test_a_graph_node_records_a_summary_of_a_large_state(tmp_path: Path) -> None:
    def grow(state: _State) -> dict[str, Any]:
        return {"items": [f"item {len(state['items'])}"]}

    builder = StateGraph(_State)
    builder.add_node("grow", grow)
    builder.add_edge(START, "grow")
    builder.add_edge("grow", END)
    trace = tmp_path / "trace.jsonl"
    state = {"run_id": "r1", "api_key": "plain-key-value", "items": [f"entry {i}" for i in range(500)]}
    builder.compile().invoke(state, {"callbacks": [JsonlTracer(trace, max_io_chars=1000)]})

    records = {(r["name"], tuple(r["tags"])): r for r in read_trace(trace)}
    node = next(r for (name, _), r in records.items() if name == "grow")
    # The node got the whole state: its line holds the small values and the size of the rest.
    assert node["inputs"] == {
        "truncated": True,
        "summary": {"run_id": "r1", "api_key": REDACTED, "items": {"omitted": "list", "items": 500}},
    }
    assert node["outputs"] == {"items": ["item 500"]}  # the update is small: kept whole
    assert "plain-key-value" not in trace.read_text(encoding="utf-8")
    assert "entry 499" not in trace.read_text(encoding="utf-8")


def test_converting_with_a_limit_stops_there() -> None:
    values = TraceValues()
    small = {"a": "x" * 10, "b": [1, 2, 3]}
    assert values.convert(small, 1000) == small

    class Counted(dict[str, str]):
        walked = 0

        def items(self) -> Any:
            Counted.walked += 1
            return super().items()

    state = {str(i): Counted(text="z" * 150, long=LONG) for i in range(100)}
    with pytest.raises(TooLarge):
        values.convert(state, 1000)
    assert Counted.walked < 5  # the walk stopped at the limit, not after 100 entries
    assert values.defined == 0  # nor did it leave a definition behind


def test_a_model_run_records_its_messages_and_generation(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    model = FakeListChatModel(responses=["an answer"])
    model.invoke([SystemMessage(LONG), HumanMessage("a question")], {"callbacks": [JsonlTracer(trace)]})
    (record,) = read_trace(trace)
    assert record["run_type"] == "llm"
    assert record["inputs"] == {
        "messages": [[{"type": "system", "content": LONG}, {"type": "human", "content": "a question"}]]
    }
    (generation,) = record["outputs"]["generations"][0]
    assert generation["message"]["type"] == "ai" and generation["message"]["content"] == "an answer"


class _Prompted(TypedDict):
    prompt: str
    answer: str


def test_a_node_and_its_task_run_record_the_same_values_once(tmp_path: Path) -> None:
    builder = StateGraph(_Prompted)
    # A runnable node: LangGraph traces the task's run and, under it, the runnable's.
    builder.add_node(
        "answer", RunnableLambda(lambda state: {"answer": state["prompt"].upper()}, name="answer")
    )
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    trace = tmp_path / "trace.jsonl"
    builder.compile().invoke({"prompt": LONG, "answer": ""}, {"callbacks": [JsonlTracer(trace)]})

    text = trace.read_text(encoding="utf-8")
    assert text.count(LONG) == 1 and text.count(LONG.upper()) == 1
    node, task = sorted(  # the node run ("seq:step:1") sorts before the task's ("graph:step:1")
        (r for r in read_trace(trace) if r["name"] == "answer"), key=lambda r: len(r["tags"][0])
    )
    assert task["inputs"] == node["inputs"] == {"prompt": LONG, "answer": ""}
    assert task["outputs"] == node["outputs"] == {"answer": LONG.upper()}


def test_a_line_that_could_not_be_written_defines_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.jsonl"
    tracer = JsonlTracer(trace)
    echo = RunnableLambda(lambda x: x, name="echo")

    def full_disk(self: JsonlTracer, data: bytes) -> None:
        raise OSError("No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(JsonlTracer, "_append", full_disk)
        echo.invoke(LONG, {"callbacks": [tracer]})  # LangChain logs the callback's error
    echo.invoke(LONG, {"callbacks": [tracer]})
    (record,) = read_trace(trace)
    assert record["inputs"]["input"] == LONG  # defined in the line that was written
