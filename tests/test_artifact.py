from __future__ import annotations

from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact
from drpo_agents.errors import ArtifactError
from drpo_agents.schemas import ICLExample


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


def test_artifact_round_trips_through_json(tmp_path: Path) -> None:
    original = artifact()
    path = original.save(tmp_path / "nested" / "artifact.json")
    assert AlignmentArtifact.load(path) == original


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"\xff\xfe not utf8", "not UTF-8 text"),
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
