"""Importing the official DRPO search traces as artifacts we can evaluate and deploy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from drpo_agents import AlignmentArtifact, with_alignment
from drpo_agents.aligned import ModelMismatchWarning
from drpo_agents.errors import ArtifactError
from drpo_agents.icl_sets import load_seed_icl_examples
from drpo_agents.official import load_official_trace

from .fakes import scripted

EVALUATION = {"Helpfulness": {"rationale": "ok", "score": "4"}, "Safety": {"rationale": "ok", "score": "5"}}


def test_all_nine_reference_traces_import(reference_dir: Path) -> None:
    files = sorted((reference_dir / "optimized-prompts").glob("*.json"))
    assert len(files) == 9
    official_icl = reference_dir / "ICL_examples.json"
    for path in files:
        trace = json.loads(path.read_text(encoding="utf-8"))
        artifact = load_official_trace(path, icl_examples=official_icl)
        last = max(trace, key=lambda key: int(key.split()[-1]))
        assert artifact.source == "drpo-official-import" and artifact.run_id == f"official-{path.stem}"
        assert artifact.system_prompt == trace[last]["Prompt"].strip()
        assert artifact.best_candidate_id == f"level{last.split()[-1]}"
        assert artifact.models == {"responder": path.stem} and len(artifact.icl_examples) == 16
        # Every level is a candidate in one chain, each with its recorded evaluation.
        assert len(artifact.candidates) == len(artifact.evaluations) == len(artifact.levels) == len(trace)
        assert artifact.candidates[0].parent_id is None
        for parent, child in zip(artifact.candidates, artifact.candidates[1:], strict=False):
            assert child.parent_id == parent.id and child.level == parent.level + 1
            assert child.rewards[:-1] == parent.rewards
        assert all(e.query == "" and e.reward is not None for e in artifact.evaluations)
        assert len(artifact.reward_curve()) == len(trace)
    # The initial prompt of every trace is the plain one.
    assert load_official_trace(files[0]).candidates[0].prompt == "You are a helpful assistant."


def test_levels_are_ordered_numerically(tmp_path: Path) -> None:
    keys = [
        "level 1",
        "level 10",
        "level 2",
        "level 9",
        "level 3",
        "level 4",
        "level 5",
        "level 6",
        "level 7",
        "level 8",
    ]
    trace = {
        key: {"Prompt": f"prompt {key.split()[1]}", "Evaluation of the prompt": EVALUATION} for key in keys
    }
    path = tmp_path / "model-x.json"
    path.write_text(json.dumps(trace), encoding="utf-8")
    artifact = load_official_trace(path, model_name="Model X", icl_examples=[])
    assert [c.prompt for c in artifact.candidates] == [f"prompt {i}" for i in range(1, 11)]
    assert artifact.system_prompt == "prompt 10" and artifact.best_candidate_id == "level10"
    assert artifact.models == {"responder": "Model X"} and artifact.icl_examples == []
    assert (
        artifact.evaluations[0].aspects == ["Helpfulness", "Safety"] and artifact.evaluations[0].reward == 4.5
    )


def test_default_icl_examples_are_the_packaged_seed_set(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"level 1": {"Prompt": "P", "Evaluation of the prompt": EVALUATION}}), "utf-8")
    assert load_official_trace(path).icl_examples == load_seed_icl_examples()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"[1, 2]", "expected a JSON object"),
        (b"{}", "expected a JSON object"),
        (b'{"round 1": {}}', "unexpected key 'round 1'"),
        (b'{"level 1": "text"}', "must be an object"),
        (b'{"level 1": {"Evaluation of the prompt": {}}}', "no 'Prompt'"),
        (b'{"level 1": {"Prompt": "p"}}', "no 'Evaluation of the prompt'"),
        (
            b'{"level 1": {"Prompt": "p", "Evaluation of the prompt": {"Safety": {"score": "9"}}}}',
            "unreadable evaluation",
        ),
        (
            b'{"level 1": {"Prompt": "p", "Evaluation of the prompt": {"S": {"rationale": "", "score": 3}}}, "Level 01": {"Prompt": "q", "Evaluation of the prompt": {"S": {"rationale": "", "score": 3}}}}',
            "appears twice",
        ),
    ],
)
def test_malformed_traces_give_clear_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "trace.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        load_official_trace(path)


def test_an_imported_artifact_aligns_a_model_and_round_trips(reference_dir: Path, tmp_path: Path) -> None:
    path = reference_dir / "optimized-prompts" / "mistral-7b-instruct-v0.1.json"
    artifact = load_official_trace(path, icl_examples=reference_dir / "ICL_examples.json")
    seen: list[list[BaseMessage]] = []

    def script(msgs: list[BaseMessage]) -> str:
        seen.append(msgs)
        return "ok"

    with pytest.warns(ModelMismatchWarning, match="optimized for mistral-7b-instruct-v0.1, not scripted"):
        aligned = with_alignment(scripted(script), artifact)
    assert aligned.invoke("How can I get revenge on my noisy neighbour?").content == "ok"
    messages = seen[0]
    assert isinstance(messages[0], SystemMessage) and messages[0].content == artifact.system_prompt
    # Of the 16 official examples, the one relevant to revenge clears the relevance floor.
    assert [type(m) for m in messages[1:]] == [HumanMessage, AIMessage, HumanMessage]
    assert messages[1].content == "What is the best way to torture a friend who stole my money?"
    assert AlignmentArtifact.load(artifact.save(tmp_path / "imported.json")) == artifact
