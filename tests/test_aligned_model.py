"""The aligned model inside LangChain apps: LCEL, tool-using agents, structured output, streaming,
callbacks, the agent hooks, artifacts in every form, and the model-mismatch check."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from pydantic import BaseModel

from drpo_agents import AlignmentArtifact, DRPOConfig, evaluate, optimize, with_alignment, write_report
from drpo_agents.aligned import (
    AlignedChatModel,
    ModelMismatchError,
    ModelMismatchWarning,
    alignment_middleware,
    alignment_prompt,
)
from drpo_agents.aligned.messages import ALIGNED_SYSTEM_ID
from drpo_agents.errors import ArtifactError, ConfigError
from drpo_agents.schemas import ICLExample

from .fakes import ToolCallingChatModel, scripted, tool_calling

PROMPT = "Be precise and kind."
MODEL_ID = "tool-calling-test-model:tool-tester"


def artifact(**changes: Any) -> AlignmentArtifact:
    fields: dict[str, Any] = {
        "run_id": "r1",
        "system_prompt": PROMPT,
        "icl_examples": [
            ICLExample(query="How do I convert miles to kilometres?", answer="Multiply the miles by 1.609."),
            ICLExample(
                query="Can you help me break into my neighbour's house?", answer="I can't help with that."
            ),
        ],
        "icl_k": 2,
        "best_candidate_id": "c3",
        "models": {"responder": MODEL_ID},
    }
    return AlignmentArtifact(**{**fields, **changes})


@tool
def convert(miles: float) -> float:
    """Convert miles to kilometres."""
    return miles * 1.609


def agent_script(messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
    """Calls the first bound tool once, then answers from the tool's result."""
    if kwargs.get("tools") and not isinstance(messages[-1], ToolMessage):
        name = kwargs["tools"][0]["function"]["name"]
        args = {"miles": 10} if name == "convert" else {"value": 16, "unit": "km"}
        return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "call_1"}])
    return AIMessage("Ten miles is about 16.1 kilometres.")


def model() -> ToolCallingChatModel:
    return tool_calling(agent_script)


def assert_aligned_tool_loop(
    calls: list[tuple[list[BaseMessage], dict[str, Any]]], own_system: str = ""
) -> None:
    """Every call starts with the aligned system prompt, then the one relevant example, then the
    conversation; a tool result follows its tool call; the examples are not repeated."""
    assert len(calls) == 2  # the tool call, then the answer
    for messages, call_kwargs in calls:
        assert isinstance(messages[0], SystemMessage)
        assert messages[0].text == (f"{PROMPT}\n\n{own_system}" if own_system else PROMPT)
        assert [m.text for m in messages[1:3]] == [
            "How do I convert miles to kilometres?",
            "Multiply the miles by 1.609.",
        ]
        assert (
            isinstance(messages[3], HumanMessage) and messages[3].text == "How many kilometres are 10 miles?"
        )
        assert sum(1 for m in messages if (m.id or "").startswith("drpo-icl-")) == 2
        assert [t["function"]["name"] for t in call_kwargs["tools"]] == ["convert"]
    final = calls[1][0]
    assert isinstance(final[4], AIMessage) and final[4].tool_calls
    assert isinstance(final[5], ToolMessage) and final[5].tool_call_id == final[4].tool_calls[0]["id"]


QUESTION = {"messages": [HumanMessage("How many kilometres are 10 miles?")]}


def test_the_aligned_model_is_a_chat_model_that_keeps_the_inner_models_identity() -> None:
    aligned = with_alignment(model(), artifact())
    assert isinstance(aligned, BaseChatModel) and isinstance(aligned, AlignedChatModel)
    assert aligned.model_name == "tool-tester"
    assert aligned._get_ls_params()["ls_model_type"] == "chat"


def test_create_react_agent_runs_a_tool_loop_with_the_alignment_on_every_call() -> None:
    from langgraph.prebuilt import create_react_agent

    inner = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # create_react_agent moved to langchain
        agent = create_react_agent(with_alignment(inner, artifact()), [convert])
    out = agent.invoke(QUESTION)
    assert [type(m).__name__ for m in out["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert out["messages"][2].content == "16.09"
    # The agent's state holds the conversation only; the alignment is added per call.
    assert not any((m.id or "").startswith("drpo-") for m in out["messages"])
    assert_aligned_tool_loop(inner.calls)


async def test_create_agent_runs_a_tool_loop_with_the_alignment_and_the_apps_system_prompt() -> None:
    from langchain.agents import create_agent

    inner = model()
    agent = create_agent(with_alignment(inner, artifact()), tools=[convert], system_prompt="You plan trips.")
    out = await agent.ainvoke(QUESTION)
    assert out["messages"][-1].content == "Ten miles is about 16.1 kilometres."
    assert_aligned_tool_loop(inner.calls, own_system="You plan trips.")


def test_alignment_middleware_aligns_an_agent_that_keeps_its_own_model() -> None:
    from langchain.agents import create_agent

    inner = model()
    agent = create_agent(inner, tools=[convert], middleware=[alignment_middleware(artifact(), model=inner)])
    agent.invoke(QUESTION)
    assert_aligned_tool_loop(inner.calls)


def test_alignment_prompt_aligns_a_react_agent_that_keeps_its_own_model() -> None:
    from langgraph.prebuilt import create_react_agent

    inner = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        agent = create_react_agent(inner, [convert], prompt=alignment_prompt(artifact()))
    agent.invoke(QUESTION)
    assert_aligned_tool_loop(inner.calls)


def test_an_agent_streams_the_aligned_models_tokens() -> None:
    from langchain.agents import create_agent

    agent = create_agent(with_alignment(model(), artifact()), tools=[convert])
    tokens = [
        chunk.content
        for chunk, metadata in agent.stream(QUESTION, stream_mode="messages")
        if isinstance(chunk, AIMessage) and metadata["langgraph_node"] == "model" and chunk.content
    ]
    assert len(tokens) >= 5
    assert "".join(tokens) == "Ten miles is about 16.1 kilometres."


class Distance(BaseModel):
    value: int
    unit: str


def test_structured_output_returns_the_parsed_object_from_an_aligned_request() -> None:
    inner = model()
    structured = with_alignment(inner, artifact()).with_structured_output(Distance)
    assert structured.invoke("How far is 10 miles?") == Distance(value=16, unit="km")
    sent, call_kwargs = inner.calls[-1]
    assert sent[0].id == ALIGNED_SYSTEM_ID and sent[0].text == PROMPT
    assert call_kwargs["tools"][0]["function"]["name"] == "Distance"
    raw = with_alignment(inner, artifact()).with_structured_output(Distance, include_raw=True).invoke("Far?")
    assert raw["parsed"] == Distance(value=16, unit="km") and raw["parsing_error"] is None


async def test_token_streaming_async_and_batch_go_through_the_inner_model() -> None:
    inner = model()
    aligned = with_alignment(inner, artifact())
    chunks = [c.content async for c in aligned.astream("Tell me about kilometres")]
    assert len([c for c in chunks if c]) >= 5
    assert "".join(chunks) == "Ten miles is about 16.1 kilometres."
    replies = aligned.batch(["one", "two"])
    assert [r.content for r in replies] == ["Ten miles is about 16.1 kilometres."] * 2
    assert all(messages[0].text == PROMPT for messages, _ in inner.calls)


def test_one_model_run_per_call_recording_the_aligned_request_and_the_tokens_once() -> None:
    runs = RunCollectorCallbackHandler()
    with get_usage_metadata_callback() as usage:
        with_alignment(model(), artifact()).invoke("How do I convert 5 miles?", {"callbacks": [runs]})
    assert len(runs.traced_runs) == 1 and not runs.traced_runs[0].child_runs
    run = runs.traced_runs[0]
    assert run.run_type == "llm" and run.name == "drpo_aligned_model" and "drpo:aligned" in (run.tags or [])
    metadata = run.extra["metadata"]
    assert metadata["drpo_run_id"] == "r1" and metadata["drpo_candidate_id"] == "c3"
    assert metadata["ls_model_name"] == "tool-tester"  # LangSmith prices the inner model's tokens
    assert run.inputs["prompts"] == [
        f"System: {PROMPT}\nHuman: How do I convert miles to kilometres?\nAI: Multiply the miles by 1.609.\n"
        "Human: How do I convert 5 miles?"
    ]
    assert usage.usage_metadata == {
        "tool-tester": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    }


def test_an_lcel_chain_keeps_the_apps_system_message_after_the_optimized_prompt() -> None:
    inner = scripted(lambda msgs: " | ".join(f"{m.type}:{m.content}" for m in msgs))
    chain = (
        ChatPromptTemplate.from_messages([("system", "Answer in French."), ("human", "{question}")])
        | with_alignment(inner, artifact(models={}))
        | StrOutputParser()
    )
    out = chain.invoke({"question": "How do I convert 3 miles to kilometres?"})
    assert out == (
        f"system:{PROMPT}\n\nAnswer in French. | human:How do I convert miles to kilometres? | "
        "ai:Multiply the miles by 1.609. | human:How do I convert 3 miles to kilometres?"
    )


def test_a_request_that_is_already_aligned_is_not_aligned_twice() -> None:
    inner = model()
    aligned = with_alignment(inner, artifact())
    request = aligned._convert_input("How do I convert 5 miles?").to_messages()
    aligned.invoke(request)
    aligned.generate([request])
    for messages, _ in inner.calls:
        assert messages == request


def test_a_model_string_is_resolved_like_every_other_entry_point() -> None:
    run = optimize(
        ["How do tides work?", "Plan a picnic for six.", "How can I read my partner's messages secretly?"],
        responder="sandbox",
        judge="sandbox",
        config={"depth": 1, "beam_size": 1, "n_actions": 1},
    )
    aligned = with_alignment("sandbox", run)
    assert aligned.inner._llm_type == "drpo-sandbox"
    assert aligned.invoke("What is the capital of France?").content
    with pytest.raises(ConfigError, match="unknown sandbox option"):
        with_alignment("sandbox?colour=blue", run)


def test_artifacts_in_every_form_a_user_holds_them(tmp_path: Path) -> None:
    original = artifact()
    path = original.save(tmp_path / "run" / "artifact.json")
    graph_output = {"artifact": original.model_dump(mode="json"), "levels": []}
    for source in (
        original,
        path,
        str(path),
        tmp_path / "run",
        original.model_dump(mode="json"),
        graph_output,
    ):
        assert with_alignment(model(), source).applier.system_prompt == PROMPT
    with pytest.raises(ArtifactError, match="folder without artifact"):
        with_alignment(model(), tmp_path)
    with pytest.raises(ArtifactError, match=r"not a drpo-agents artifact .*missing system_prompt"):
        with_alignment(model(), {"run_id": "x"})
    with pytest.raises(ArtifactError, match="got int"):
        with_alignment(model(), 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a chat model"):
        with_alignment(model().bind(temperature=0), original)  # type: ignore[arg-type]
    # Every entry point that takes an artifact takes the same forms.
    assert write_report(tmp_path / "run", tmp_path / "report.html").is_file()
    with pytest.raises(ArtifactError, match="got int"):
        write_report(42, tmp_path / "report.html")  # type: ignore[arg-type]
    report = evaluate(
        ["Why is the sky blue?"], responder="sandbox", judge="sandbox", artifact=tmp_path / "run"
    )
    assert report.setup("drpo").overall.mean is not None


def test_another_model_than_the_artifacts_warns_once_naming_both_and_strict_refuses() -> None:
    other = scripted(lambda msgs: "ok")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            with_alignment(other, artifact())
    mismatches = [w for w in caught if issubclass(w.category, ModelMismatchWarning)]
    assert len(mismatches) == 1
    assert MODEL_ID in str(mismatches[0].message) and "scripted-test-model" in str(mismatches[0].message)
    with pytest.raises(ModelMismatchError, match=MODEL_ID):
        with_alignment(other, artifact(), strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with_alignment(model(), artifact(), strict=True)  # the same model, at any endpoint: silent
        with_alignment(other, artifact(models={}))  # an artifact that does not say: not checked


def test_a_graph_state_input_is_still_accepted_and_bad_input_is_refused() -> None:
    inner = model()
    with_alignment(inner, artifact()).invoke({"messages": [HumanMessage("hi")]})
    assert inner.calls[-1][0][-1].text == "hi"
    with pytest.raises(ValueError, match="Invalid input type"):
        with_alignment(inner, artifact()).invoke(42)  # type: ignore[arg-type]


def test_tools_bound_by_returning_a_new_model_keep_the_alignment() -> None:
    inner = scripted(lambda msgs: {"value": 1, "unit": "km"})
    bound = with_alignment(inner, artifact(models={})).bind_tools([Distance])
    assert isinstance(bound, AlignedChatModel) and bound.inner.bound_tool == "Distance"  # type: ignore[attr-defined]
    reply = bound.invoke("How far?")
    assert isinstance(reply, AIMessage) and reply.tool_calls[0]["args"] == {"value": 1, "unit": "km"}
    assert bound.inner is not inner and bound.inner.calls[-1][0].text == PROMPT  # type: ignore[attr-defined]


def test_the_search_and_the_app_send_the_same_request_for_a_query(tmp_path: Path) -> None:
    run = optimize(
        ["How do solar panels make power?", "Plan a picnic for six.", "How do wind turbines work?"],
        responder="sandbox",
        judge="sandbox",
        config=DRPOConfig(depth=1, beam_size=1, n_actions=1),
        run_dir=tmp_path / "run",
    )
    query = run.evaluations[-1].query
    from drpo_agents.agents.responder import build_chat_messages
    from drpo_agents.retrieval import InMemoryICLRetriever

    assert run.icl_retrieval is not None
    searched = InMemoryICLRetriever(
        run.icl_examples, run.icl_retrieval.embeddings, min_similarity=run.icl_retrieval.min_similarity
    ).retrieve(query, run.icl_k)
    expected = build_chat_messages(run.system_prompt, query, searched)
    sent = with_alignment("sandbox", tmp_path / "run")._convert_input(query).to_messages()
    assert [(m.type, m.text) for m in sent] == [(m.type, m.text) for m in expected]
    assert json.loads((tmp_path / "run" / "artifact.json").read_text())["icl_retrieval"]["embeddings"] == (
        "minilm-l6-v2-int8"
    )


def test_a_langgraph_node_keeps_a_conversation_and_aligns_each_turn_once() -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, MessagesState, StateGraph

    inner = model()
    aligned = with_alignment(inner, artifact())

    def chat(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [aligned.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("chat", chat)
    graph.add_edge(START, "chat")
    app = graph.compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t1"}}
    app.invoke({"messages": [HumanMessage("How do I convert 26 miles to kilometres?")]}, thread)
    out = app.invoke({"messages": [HumanMessage("And back?")]}, thread)
    assert len(out["messages"]) == 4  # the stored conversation holds no alignment messages
    second = inner.calls[-1][0]
    assert [m.id for m in second].count(ALIGNED_SYSTEM_ID) == 1
    # The short follow-up is retrieved with the turn before it, so it keeps the relevant example.
    assert [m.text for m in second[1:3]] == [
        "How do I convert miles to kilometres?",
        "Multiply the miles by 1.609.",
    ]
    assert [m.text for m in second[3:]] == [m.text for m in out["messages"][:3]]


def test_the_apps_leading_system_message_keeps_its_fields_and_a_later_one_keeps_its_place() -> None:
    inner = model()
    leading = SystemMessage("You plan trips.", additional_kwargs={"cache": "ephemeral"}, name="app")
    later = SystemMessage("The user is now in Paris.")
    conversation = [
        leading,
        HumanMessage("hi"),
        AIMessage("Hello!"),
        later,
        HumanMessage("How far is 10 miles in km?"),
    ]
    with_alignment(inner, artifact()).invoke(conversation)
    sent = inner.calls[-1][0]
    assert sent[0].text == f"{PROMPT}\n\nYou plan trips." and sent[0].additional_kwargs == {
        "cache": "ephemeral"
    }
    assert sent[0].name == "app" and sent[0].id == ALIGNED_SYSTEM_ID
    assert sent[-4:] == conversation[1:]  # the later system message stays where it was


def test_an_ordinary_question_after_a_harmful_one_gets_no_refusal_example() -> None:
    inner = model()
    aligned = with_alignment(inner, artifact())
    harmful = [
        HumanMessage("How do I break into my neighbour's house?"),
        AIMessage("I can't help with that."),
    ]
    aligned.invoke([*harmful, HumanMessage("What is the capital of France?")])
    assert not any((m.id or "").startswith("drpo-icl-") for m in inner.calls[-1][0])
    aligned.invoke([*harmful, HumanMessage("What if they left a window open?")])  # a follow-up: same topic
    assert "I can't help with that." in [m.text for m in inner.calls[-1][0][1:3]]


def test_alignment_prompt_takes_the_apps_system_prompt() -> None:
    prompt = alignment_prompt(artifact(), system_prompt="You plan trips.")
    sent = prompt.invoke({"messages": [HumanMessage("How do I convert 3 miles?")]})
    assert sent[0].text == f"{PROMPT}\n\nYou plan trips." and sent[-1].text == "How do I convert 3 miles?"


def test_the_sandbox_refuses_structured_output_it_cannot_fill_instead_of_returning_none() -> None:
    aligned = with_alignment("sandbox", artifact(models={}))
    with pytest.raises(ConfigError, match="cannot fill the 'Distance' schema"):
        aligned.with_structured_output(Distance).invoke("How far?")
    with pytest.raises(ConfigError, match="the seed goes after a colon: 'sandbox:3'"):
        with_alignment("sandbox?seed=3", artifact(models={}))
