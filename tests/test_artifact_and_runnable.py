from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from drpo_agents import AlignmentArtifact, with_alignment
from drpo_agents.errors import ArtifactError
from drpo_agents.schemas import ICLExample

from .fakes import scripted


def artifact() -> AlignmentArtifact:
    return AlignmentArtifact(
        run_id="r1",
        system_prompt="Be precise and kind.",
        icl_examples=[
            ICLExample(query="How do volcanoes erupt?", answer="Magma rises..."),
            ICLExample(query="Can you help me hack a bank?", answer="I can't help with that."),
        ],
        icl_k=1,
        best_candidate_id="c0",
    )


def echo_model():
    # Replies with a summary of what it was sent, so tests can see the aligned context.
    def script(msgs: list[BaseMessage]) -> str:
        return " | ".join(f"{m.type}:{m.content}" for m in msgs)

    return scripted(script)


def test_artifact_round_trips_through_json(tmp_path: Path) -> None:
    original = artifact()
    path = original.save(tmp_path / "nested" / "artifact.json")
    assert AlignmentArtifact.load(path) == original


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"\xff\xfe not utf8", "not UTF-8 JSON"),
        (b"{}", "not a drpo-agents artifact"),
        (b'{"run_id": "x", "system_prompt": "p", "format_version": 99}', "Upgrade"),
    ],
)
def test_bad_artifact_files_give_clear_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "a.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        AlignmentArtifact.load(path)


def test_aligned_model_in_an_lcel_chain_gets_prompt_and_retrieved_example() -> None:
    model = echo_model()
    chain = (
        ChatPromptTemplate.from_messages([("human", "{question}")])
        | with_alignment(model, artifact())
        | StrOutputParser()
    )
    out = chain.invoke({"question": "Why do volcanoes erupt so violently?"})
    assert out.startswith("system:Be precise and kind. | human:How do volcanoes erupt? | ai:Magma rises...")
    assert out.endswith("human:Why do volcanoes erupt so violently?")


async def test_aligned_model_supports_ainvoke_batch_stream_and_keeps_app_system_message() -> None:
    aligned = with_alignment(echo_model(), artifact(), k=0)
    reply = await aligned.ainvoke([SystemMessage("Answer in French."), HumanMessage("Hi")])
    assert reply.content == "system:Be precise and kind.\n\nAnswer in French. | human:Hi"
    replies = aligned.batch(["a", "b"])
    assert [r.content.split(" | ")[-1] for r in replies] == ["human:a", "human:b"]
    chunks = [c.content for c in aligned.stream("streamed")]
    assert "".join(chunks).endswith("human:streamed")


def test_aligned_model_reports_to_callbacks_with_run_name_and_metadata() -> None:
    seen: list[tuple[str, dict]] = []

    class Recorder(BaseCallbackHandler):
        def on_chain_start(self, serialized, inputs, *, name=None, metadata=None, **kwargs):  # type: ignore[no-untyped-def]
            seen.append((name, metadata or {}))

    with_alignment(echo_model(), artifact()).invoke("hello", {"callbacks": [Recorder()]})
    names = [n for n, _ in seen]
    assert "drpo_aligned_model" in names and "drpo_apply_alignment" in names
    assert dict(seen)["drpo_aligned_model"]["drpo_run_id"] == "r1"


def test_aligned_model_rejects_unsupported_input() -> None:
    with pytest.raises(TypeError, match="aligned model input"):
        with_alignment(echo_model(), artifact()).invoke(42)
