"""Warm start: a run that starts from an earlier result (artifact, file, run folder, official import)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact, DRPOConfig, ReviewRequired, load_training_queries, optimize, resume
from drpo_agents.errors import ConfigError, DRPOWarning
from drpo_agents.icl_sets import load_icl_examples
from drpo_agents.official import load_official_trace
from drpo_agents.schemas import ICLExample
from drpo_agents.warm_start import artifact_sha256, starting_point

from .test_cli import drpo

SMALL = DRPOConfig(depth=1, beam_size=1, n_actions=2, seed=5, max_concurrency=4)
TRACE = {
    "level 1": {
        "Prompt": "You are a helpful assistant.",
        "Evaluation of the prompt": {"Helpfulness": {"rationale": "generic", "score": "3"}},
    },
    "level 2": {
        "Prompt": "You are a careful assistant. Explain why each step matters, and say what you cannot know.",
        "Evaluation of the prompt": {"Helpfulness": {"rationale": "better", "score": "4"}},
    },
}
EXAMPLES = [
    ICLExample(
        id="e1", query="How do I start running?", answer="Start with short, easy runs three times a week."
    ),
    ICLExample(
        id="e2", query="How do I pick a book?", answer="Read the first pages and follow your curiosity."
    ),
]


def _run(tmp_path: Path, name: str, **kwargs: object) -> AlignmentArtifact:
    return optimize(
        load_training_queries()[:8],
        responder="sandbox",
        judge="sandbox",
        config=kwargs.pop("config", SMALL),
        run_dir=tmp_path / name,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> tuple[AlignmentArtifact, Path]:
    folder = tmp_path_factory.mktemp("parent")
    config = DRPOConfig(depth=2, beam_size=1, n_actions=2, seed=1, max_concurrency=4)
    artifact = _run(folder, "run", config=config, icl_examples=EXAMPLES)
    assert artifact.system_prompt != config.initial_prompt  # the parent moved, so a warm start differs
    return artifact, folder / "run"


def test_a_warm_start_begins_from_the_parents_prompt_and_examples_and_names_it(
    tmp_path: Path, parent: tuple[AlignmentArtifact, Path]
) -> None:
    earlier, run_dir = parent
    child = _run(tmp_path, "child", start_from=run_dir)
    root = next(c for c in child.candidates if c.parent_id is None)
    assert root.prompt == earlier.system_prompt
    assert [e.query for e in child.icl_examples] == [e.query for e in earlier.icl_examples]
    assert child.parent is not None
    assert child.parent.run_id == earlier.run_id and child.parent.source == "drpo-agents"
    assert child.parent.responder == earlier.models["responder"]
    assert child.parent.artifact_sha256 == artifact_sha256(earlier)
    stored = json.loads((tmp_path / "child" / "config.json").read_text())
    assert stored["config"]["initial_prompt"] == earlier.system_prompt  # so estimate/resume agree


def test_every_form_of_the_parent_gives_the_same_start(parent: tuple[AlignmentArtifact, Path]) -> None:
    earlier, run_dir = parent
    forms = [earlier, run_dir, str(run_dir / "artifact.json"), earlier.model_dump(mode="json")]
    points = [starting_point(form) for form in forms]
    assert len({p.parent.artifact_sha256 for p in points}) == 1
    assert len({p.prompt for p in points}) == 1


def test_given_examples_replace_the_parents_and_a_second_initial_prompt_is_refused(
    tmp_path: Path, parent: tuple[AlignmentArtifact, Path]
) -> None:
    earlier, _ = parent
    mine = [
        ICLExample(query="What is a good first houseplant?", answer="A pothos: it forgives missed watering.")
    ]
    child = _run(tmp_path, "mine", start_from=earlier, icl_examples=mine)
    assert [e.query for e in child.icl_examples] == [mine[0].query]
    with pytest.raises(ConfigError, match="warm start sets the initial prompt"):
        _run(
            tmp_path,
            "two",
            start_from=earlier,
            config=SMALL.model_copy(update={"initial_prompt": "Be brief."}),
        )


def test_a_warm_start_from_an_imported_official_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(TRACE), encoding="utf-8")
    imported = load_official_trace(trace, icl_examples=EXAMPLES)
    imported.save(tmp_path / "imported.json")
    child = _run(tmp_path, "child", start_from=tmp_path / "imported.json")
    assert child.candidates[0].prompt == TRACE["level 2"]["Prompt"]
    assert child.parent is not None and child.parent.source == "drpo-official-import"
    assert child.parent.run_id == "official-trace" and child.parent.responder == "trace"


def test_a_warm_start_from_the_published_reference_prompts(tmp_path: Path, reference_dir: Path) -> None:
    path = reference_dir / "optimized-prompts" / "mistral-7b-instruct-v0.1.json"
    imported = load_official_trace(path, icl_examples=reference_dir / "ICL_examples.json")
    child = _run(tmp_path, "child", start_from=imported)
    assert child.candidates[0].prompt == imported.system_prompt
    assert len(child.icl_examples) == 16 and child.parent is not None


def test_a_resumed_warm_start_keeps_its_start(tmp_path: Path, parent: tuple[AlignmentArtifact, Path]) -> None:
    earlier, _ = parent
    config = SMALL.model_copy(update={"review": True})
    with pytest.raises(ReviewRequired):
        _run(tmp_path, "paused", start_from=earlier, config=config)
    # A new call, as a new process would make it: the start is in the run's checkpointed input.
    resumed = resume(tmp_path / "paused", review={"action": "approve"})
    assert resumed.parent is not None and resumed.parent.run_id == earlier.run_id
    assert resumed.candidates[0].prompt == earlier.system_prompt
    assert [e.query for e in resumed.icl_examples] == [e.query for e in earlier.icl_examples]


def test_an_icl_file_that_is_an_artifact_points_to_warm_start(
    tmp_path: Path, parent: tuple[AlignmentArtifact, Path]
) -> None:
    _, run_dir = parent
    with pytest.raises(
        ConfigError, match="is an artifact, not an ICL example file: start from it with --from"
    ):
        load_icl_examples(run_dir / "artifact.json")


def test_official_answers_that_are_not_text_are_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "icl.json"
    path.write_text(json.dumps({"How do I rest?": "<START>Sleep eight hours.<END>", "Bad one": 2}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        examples = load_icl_examples(path)
    assert [e.answer for e in examples] == ["Sleep eight hours."]
    assert [str(w.message) for w in caught if issubclass(w.category, DRPOWarning)] == [
        f"{path}: skipped the ICL example 'Bad one': its answer is int, not text"
    ]


@pytest.mark.slow
def test_the_cli_starts_from_a_run_folder_and_says_so(
    tmp_path: Path, parent: tuple[AlignmentArtifact, Path]
) -> None:
    earlier, run_dir = parent
    common = ("--sandbox", "--depth", "1", "--beam-size", "1", "--n-actions", "2")
    result = drpo("optimize", *common, "--from", str(run_dir), "--run-dir", "child", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Started from: run {earlier.run_id} (drpo-agents, sha256 " in result.stdout
    child = AlignmentArtifact.load(tmp_path / "child" / "artifact.json")
    assert child.parent is not None and child.candidates[0].prompt == earlier.system_prompt
    # A bad source fails before any work, in one line; no run folder is made.
    missing = drpo("optimize", *common, "--from", "nowhere.json", "--run-dir", "never", cwd=tmp_path)
    assert missing.returncode == 2 and not (tmp_path / "never").exists()
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    # Our warnings are one line too.
    icl = tmp_path / "icl.json"
    icl.write_text(json.dumps({"How do I rest?": "Sleep eight hours.", "Bad one": None}))
    warned = drpo("optimize", *common, "--icl", str(icl), "--run-dir", "warned", "--quiet", cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr.strip().splitlines() == [
        f"warning: {icl}: skipped the ICL example 'Bad one': its answer is NoneType, not text"
    ]
