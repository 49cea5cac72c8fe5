"""A resume that says what it does: levels added to a finished run, settings it may and may not
change, models other than the run's, and CLI-made runs resumed from Python."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact, DRPOConfig, ReviewRequired, load_training_queries, optimize, resume
from drpo_agents.errors import ResumeRefused
from drpo_agents.infra.run_files import CLI_FILE, CONFIG_FILE
from drpo_agents.models.registry import model_identity, rebuild_spec, resolve_model
from drpo_agents.models.sandbox import sandbox_models
from drpo_agents.resumption import ModelChangeWarning

from .test_cli import drpo

CONFIG = DRPOConfig(depth=2, beam_size=1, n_actions=2, seed=3, max_concurrency=4)
QUERIES = load_training_queries()[:12]


def _run(run_dir: Path, config: DRPOConfig = CONFIG, queries: list[str] = QUERIES) -> AlignmentArtifact:
    return optimize(queries, responder="sandbox", judge="sandbox", config=config, run_dir=run_dir, run_id="r")


def _without_run_facts(artifact: AlignmentArtifact) -> dict[str, object]:
    dump = artifact.model_dump()
    dump.pop("created_at", None)
    for level in dump["levels"]:
        level.pop("depth_limit")  # the limit in force when the level ran: it differs by design
    return dump


def test_extend_depth_continues_a_finished_run_as_if_it_had_been_deeper(tmp_path: Path) -> None:
    _run(tmp_path / "short")
    extended = resume(tmp_path / "short", extend_depth=2)
    straight = _run(tmp_path / "long", CONFIG.model_copy(update={"depth": 4}))

    assert extended.notes[-1] == straight.notes[-1] == "stopped: reached depth 6"  # two carried levels
    assert _without_run_facts(extended) == _without_run_facts(straight)
    record = json.loads((tmp_path / "short" / CONFIG_FILE).read_text())
    assert record["config"]["depth"] == 4  # config.json says what the run now is
    assert [lv.depth_limit for lv in extended.levels][:3] == [
        2,
        2,
        3,
    ]  # the limits the first levels ran under


def test_extend_depth_is_refused_when_no_level_can_be_added_and_nothing_is_written(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _run(run_dir, CONFIG.model_copy(update={"depth": 10}), QUERIES[:3])  # stops when its queries run out
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}

    with pytest.raises(ResumeRefused, match="used all 3 of its training queries"):
        resume(run_dir, extend_depth=1)
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after[CONFIG_FILE] == before[CONFIG_FILE]
    assert after["artifact.json"] == before["artifact.json"]


def test_extend_depth_of_a_run_that_has_not_finished_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ReviewRequired):
        _run(run_dir, CONFIG.model_copy(update={"review": True}))
    with pytest.raises(ResumeRefused, match="has not finished"):
        resume(run_dir, extend_depth=1)
    assert json.loads((run_dir / CONFIG_FILE).read_text())["config"]["depth"] == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"beam_size": 4}, "a resume cannot change beam_size: the levels already run used the old value"),
        ({"depth": 9}, r"a resume cannot change depth; add levels to a finished run with extend_depth=N"),
        ({"max_concurrency": 2, "seed": 7}, "a resume cannot change seed"),
    ],
)
def test_settings_a_resume_cannot_honour_are_refused_and_never_written(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    run_dir = tmp_path / "run"
    _run(run_dir)
    before = (run_dir / CONFIG_FILE).read_bytes()
    with pytest.raises(ResumeRefused, match=message):
        resume(run_dir, config_overrides=overrides)
    assert (run_dir / CONFIG_FILE).read_bytes() == before


def test_safe_settings_and_unchanged_values_are_accepted_and_saved_once_the_run_goes_on(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    first = _run(run_dir)
    overrides = {"max_concurrency": 2, "beam_size": 1, "max_cost": 5.0}
    before = (run_dir / CONFIG_FILE).read_bytes()
    assert resume(run_dir, config_overrides=overrides).system_prompt == first.system_prompt
    assert (run_dir / CONFIG_FILE).read_bytes() == before  # finished: nothing ran, nothing changed
    resume(run_dir, config_overrides=overrides, extend_depth=1)
    saved = json.loads((run_dir / CONFIG_FILE).read_text())["config"]
    assert (saved["max_concurrency"], saved["max_cost"], saved["beam_size"], saved["depth"]) == (2, 5.0, 1, 3)


def test_another_model_is_refused_unless_allowed_and_then_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _run(run_dir)
    before = (run_dir / CONFIG_FILE).read_bytes()
    with pytest.raises(ResumeRefused, match=r"responder 'drpo-sandbox:responder\(seed=0\)' -> "):
        resume(run_dir, responder="sandbox:1", extend_depth=1)
    assert (run_dir / CONFIG_FILE).read_bytes() == before

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        changed = resume(run_dir, responder="sandbox:1", extend_depth=1, allow_model_change=True)
    said = [str(w.message) for w in caught if issubclass(w.category, ModelChangeWarning)]
    assert len(said) == 1 and "its earlier levels were made by the old ones" in said[0]
    assert changed.models["responder"] == "drpo-sandbox:responder(seed=1)"
    identities = json.loads((run_dir / CONFIG_FILE).read_text())["identities"]
    assert identities["responder"] == "drpo-sandbox:responder(seed=1)"
    resume(run_dir, responder="sandbox:1")  # the change is the run's now: no second refusal
    assert resume(run_dir).models["responder"] == "drpo-sandbox:responder(seed=1)"  # rebuilt as changed

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = (run_dir / CONFIG_FILE).read_bytes()
        resume(run_dir, responder="sandbox:2", allow_model_change=True)  # finished: nothing runs
    assert (run_dir / CONFIG_FILE).read_bytes() == before
    said = [str(w.message) for w in caught if issubclass(w.category, ModelChangeWarning)]
    assert len(said) == 1 and "has finished: nothing ran with the other models" in said[0]


def test_sandbox_and_local_instances_are_recorded_by_a_string_that_rebuilds_them() -> None:
    models = sandbox_models(4, judge_options={"noise": 0.3}, attention_span=3)
    for role, model in models.items():
        spec = rebuild_spec(model)
        assert spec is not None
        assert model_identity(resolve_model(spec, role)) == model_identity(model)  # type: ignore[arg-type]
    assert rebuild_spec(models["judge"]) == "sandbox:4?noise=0.3"
    assert rebuild_spec(resolve_model("sandbox", "judge").bind(stop=["x"])) is None  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_cli_extends_refuses_and_changes_models_and_python_resumes_its_sandbox_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = drpo("optimize", "--sandbox", "--depth", "1", "--beam-size", "1", "--run-dir", "run", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    run_dir = tmp_path / "run"
    # Built by the CLI from "sandbox" strings as instances: Python rebuilds them from config.json,
    # from another working directory, with the run's own memory (not one made where it stands).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = resume(run_dir)
    assert resumed.system_prompt == json.loads((run_dir / "artifact.json").read_text())["system_prompt"]
    assert list(elsewhere.iterdir()) == []

    extended = drpo("resume", "run", "--extend-depth", "1", "--json", cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr
    assert json.loads((run_dir / CONFIG_FILE).read_text())["config"]["depth"] == 2

    cli_before = (run_dir / CLI_FILE).read_bytes()
    refused = drpo("resume", "run", "--responder", "sandbox:9", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: the run used other models")
    assert "--allow-model-change" in refused.stderr and "continue it with" not in refused.stderr
    assert (run_dir / CLI_FILE).read_bytes() == cli_before

    idle = drpo("resume", "run", "--responder", "sandbox:9", "--allow-model-change", "-q", cwd=tmp_path)
    assert idle.returncode == 0 and "has finished: nothing ran with the other models" in idle.stderr
    assert (run_dir / CLI_FILE).read_bytes() == cli_before  # a finished run took nothing

    allowed = drpo(
        "resume", "run", "--responder", "sandbox:9", "--allow-model-change", "--extend-depth", "1", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stderr.startswith("warning: run ") and "resumes with other models" in allowed.stderr
    assert json.loads((run_dir / CLI_FILE).read_text())["responder"] == "sandbox:9"
    assert drpo("resume", "run", "-q", cwd=tmp_path).returncode == 0  # the new model is the run's now
