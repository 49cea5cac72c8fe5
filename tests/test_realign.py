"""Realignment rounds: promote a better candidate, keep the deployed artifact against a worse one,
use each query once, give the same result for the same seed, survive a kill at any moment (the
pointer never breaks), and run from the CLI the way cron runs it."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from drpo_agents import AlignmentArtifact, load_training_queries, optimize
from drpo_agents.aligned import with_alignment
from drpo_agents.artifact import load_artifact
from drpo_agents.errors import ConfigError
from drpo_agents.models.registry import resolve_model
from drpo_agents.realign import Deployment, RoundRecord, realign
from drpo_agents.realign.inputs import split_held_out
from drpo_agents.warm_start import artifact_sha256

from .conftest import REPO_ROOT
from .realign_runner import CONFIG
from .test_cli import ENV, drpo

QUERIES = load_training_queries()


def _write_queries(path: Path, first: int, last: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(q) + "\n" for q in QUERIES[first:last]), encoding="utf-8")
    return path


def _round(deploy_dir: Path, queries: Path, **kwargs: object) -> RoundRecord:
    return realign(deploy_dir, queries, responder="sandbox", judge="sandbox", config=CONFIG, **kwargs)  # type: ignore[arg-type]


def _content(artifact: AlignmentArtifact) -> dict[str, object]:
    dump = artifact.model_dump()
    dump.pop("created_at")
    return dump


@pytest.fixture(scope="module")
def strong_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt optimized longer than a round searches: what a round's candidate must beat."""
    run_dir = tmp_path_factory.mktemp("strong") / "run"
    optimize(
        QUERIES[150:206],
        responder="sandbox",
        judge="sandbox",
        config={"depth": 3, "seed": 0},
        run_dir=run_dir,
    )
    return run_dir


def test_a_better_candidate_is_promoted_and_apps_load_it_from_the_folder(tmp_path: Path) -> None:
    deploy = tmp_path / "alignment"
    record = _round(deploy, _write_queries(tmp_path / "week1.jsonl", 0, 20))
    assert not (deploy / "memory").exists() and (deploy / "rounds" / "r0001" / "memory").is_dir()  # its own

    assert (record.round, record.decision, record.deployed_before, record.deployed_after) == (
        1,
        "promoted",
        "v0000",  # the plain initial prompt, deployed first
        "v0001",
    )
    assert record.gain is not None and record.gain[1] is not None and record.gain[1] > 0
    assert os.readlink(deploy / "current.json") == "versions/v0001.json"
    assert deploy.stat().st_mode & 0o077 == 0  # owner-only, whatever the umask
    candidate = load_artifact(deploy / "rounds" / "r0001")
    assert load_artifact(deploy) == candidate  # the folder loads as its deployed artifact
    deployed_first = load_artifact(deploy / "versions" / "v0000.json")
    assert candidate.parent is not None
    assert (candidate.parent.run_id, candidate.parent.artifact_sha256) == (
        "initial",
        artifact_sha256(deployed_first),
    )
    assert Deployment(deploy).history() == [record]
    assert len(record.train_queries) == 14 and len(record.held_out_queries) == 6
    aligned = with_alignment(resolve_model("sandbox", "responder"), deploy)  # type: ignore[arg-type]
    assert aligned.invoke("How do tides work?").text
    wrong = drpo("resume", str(deploy), cwd=tmp_path)
    assert wrong.returncode == 2 and "is a deployment folder, not a run: `drpo realign`" in wrong.stderr


def test_a_worse_candidate_is_kept_and_the_history_says_why(tmp_path: Path, strong_artifact: Path) -> None:
    deploy = tmp_path / "alignment"
    record = _round(deploy, _write_queries(tmp_path / "q.jsonl", 100, 120), initial=strong_artifact)

    assert (record.decision, record.deployed_after) == ("kept", "v0000")
    assert record.reason.startswith("gate failed: gain over deployed (lower end of its interval)")
    assert record.candidate_mean is not None and record.deployed_mean is not None
    assert record.candidate_mean < record.deployed_mean
    assert load_artifact(deploy) == load_artifact(strong_artifact)  # still deployed
    assert Deployment(deploy).history() == [record]


def test_each_query_is_used_once_and_a_growing_folder_feeds_the_next_round(tmp_path: Path) -> None:
    deploy, inbox = tmp_path / "alignment", tmp_path / "inbox"
    _write_queries(inbox / "week1.jsonl", 0, 20)
    first = _round(deploy, inbox, shared_memory=True)
    again = _round(deploy, inbox, shared_memory=True)
    assert again.decision == "skipped" and "0 new queries" in again.reason
    assert len(Deployment(deploy).history()) == 1  # a skip is not a round

    _write_queries(inbox / "week2.jsonl", 10, 40)  # overlaps week 1 by ten queries
    second = _round(deploy, inbox, shared_memory=True)
    assert second.round == 2 and second.query_files == [str(inbox / "week2.jsonl")]
    assert len(second.train_queries) + len(second.held_out_queries) == 20
    assert not set(first.query_keys) & set(second.query_keys)
    assert all(q.startswith("week2/") for q in second.train_queries + second.held_out_queries)

    # Round 2 learned from round 1 through the shared memory (--shared-memory), and says so.
    sources = load_artifact(deploy / "rounds" / "r0002").lesson_sources()
    assert sources.get("r0001", 0) > 0, sources
    inspected = drpo("inspect", str(deploy / "rounds" / "r0002"), cwd=tmp_path)
    assert f"from earlier runs (r0001: {sources['r0001']})" in " ".join(inspected.stdout.split())


def test_the_split_depends_on_the_queries_and_the_seed_only() -> None:
    queries = QUERIES[:20]
    train, held = split_held_out(queries, 0.3, seed=0)
    shuffled = random.Random(1).sample(queries, len(queries))
    assert {q["id"] for q in split_held_out(shuffled, 0.3, seed=0)[1]} == {q["id"] for q in held}
    assert {q["id"] for q in split_held_out(queries, 0.3, seed=1)[1]} != {q["id"] for q in held}
    assert len(held) == 6 and len(train) == 14
    assert split_held_out(queries[:2], 0.3, seed=0)[1] != [] != split_held_out(queries[:2], 0.3, seed=0)[0]


def test_the_same_seed_gives_the_same_round_in_another_folder(tmp_path: Path) -> None:
    one = _round(tmp_path / "a" / "alignment", _write_queries(tmp_path / "a" / "q.jsonl", 0, 20))
    two = _round(tmp_path / "b" / "deep" / "alignment", _write_queries(tmp_path / "b" / "q.jsonl", 0, 20))
    assert one.model_dump(exclude={"query_files"}) == two.model_dump(exclude={"query_files"})
    versions = [
        load_artifact(tmp_path / p / "versions" / "v0001.json") for p in ("a/alignment", "b/deep/alignment")
    ]
    assert _content(versions[0]) == _content(versions[1])


@pytest.mark.parametrize("failing_step", range(5))  # version, fsync, link, switch, fsync
def test_promotion_interrupted_at_any_step_leaves_a_whole_pointer_and_completes_on_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_step: int
) -> None:
    deployment = Deployment(tmp_path)
    old, new = (AlignmentArtifact(run_id=n, system_prompt=f"You are {n}.") for n in ("old", "new"))
    deployment.promote(old, "v0000")
    steps = [0]
    real_replace, real_symlink, real_fsync = os.replace, os.symlink, os.fsync

    def step(real):  # type: ignore[no-untyped-def]
        def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
            steps[0] += 1
            if steps[0] == failing_step + 1:
                raise KeyboardInterrupt  # what a kill at this step leaves behind, but catchable
            return real(*args, **kwargs)

        return interrupted

    monkeypatch.setattr(os, "replace", step(real_replace))
    monkeypatch.setattr(os, "symlink", step(real_symlink))
    monkeypatch.setattr(os, "fsync", step(real_fsync))
    with pytest.raises(KeyboardInterrupt):
        deployment.promote(new, "v0001")
    monkeypatch.undo()
    assert load_artifact(deployment.pointer) in (old, new)
    deployment.promote(new, "v0001")  # the rerun completes it
    assert load_artifact(deployment.pointer) == new and deployment.current_version() == "v0001"


@pytest.mark.slow
def test_a_process_killed_while_promoting_never_leaves_a_broken_pointer(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    AlignmentArtifact(run_id="a", system_prompt="You are A.").save(first)
    AlignmentArtifact(run_id="b", system_prompt="You are B.").save(second)
    deploy = tmp_path / "alignment"
    Deployment(deploy).promote(load_artifact(first), "v0000")
    expected = {load_artifact(first).system_prompt, load_artifact(second).system_prompt}
    rng = random.Random(7)
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.realign_runner", "promote", str(deploy), str(first), str(second)],
            cwd=REPO_ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        for _ in range(rng.randint(5, 60)):  # promotions to let through before the kill lands
            assert child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert load_artifact(deploy / "current.json").system_prompt in expected


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [6, 45])  # a judge call of the search; one of the evaluation
def test_a_round_killed_mid_way_completes_on_rerun_as_if_never_killed(tmp_path: Path, kill_at: int) -> None:
    queries = _write_queries(tmp_path / "q.jsonl", 0, 20)
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.realign_runner",
            "round",
            str(tmp_path / "killed"),
            str(queries),
            str(kill_at),
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert Deployment(tmp_path / "killed").current_version() == "v0000"  # nothing promoted yet
    resumed = _round(tmp_path / "killed", queries)
    whole = _round(tmp_path / "whole", queries)
    assert resumed.model_dump() == whole.model_dump()
    assert [_content(load_artifact(tmp_path / p)) for p in ("killed", "whole")] == [
        _content(load_artifact(tmp_path / "whole"))
    ] * 2


@pytest.mark.slow
def test_the_cli_round_as_cron_runs_it(tmp_path: Path) -> None:
    """The crontab line of docs/REALIGN.md, run as cron would: another working directory, an
    empty environment but PATH and HOME."""
    doc = (REPO_ROOT / "docs" / "REALIGN.md").read_text(encoding="utf-8")
    line = next(text for text in doc.splitlines() if text.startswith("0 3 * * * "))
    command = line.removeprefix("0 3 * * * ")
    app = tmp_path / "srv" / "app"
    _write_queries(app / "incoming" / "week1.jsonl", 0, 20)
    command = command.replace("/srv/app", str(app)).replace(
        ".venv/bin/drpo", shlex.quote(str(Path(sys.executable).parent / "drpo"))
    )
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    ran = subprocess.run(
        ["/bin/sh", "-c", command], cwd="/", env=cron_env, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    log = (app / "realign.log").read_text(encoding="utf-8")
    assert log.startswith("round 1: promoted v0001 (candidate ")
    again = subprocess.run(
        ["/bin/sh", "-c", command], cwd="/", env=cron_env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0
    assert (app / "realign.log").read_text().splitlines()[-1].startswith("no round: 0 new queries")

    as_json = drpo(
        "realign",
        str(app / "alignment"),
        "--queries",
        str(app / "incoming"),
        "--sandbox",
        "--json",
        cwd=tmp_path,
    )
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["decision"] == "skipped"


def test_a_round_refused_at_its_inputs_takes_the_next_ones_and_leaves_nothing_deployed(
    tmp_path: Path,
) -> None:
    deploy = tmp_path / "alignment"
    with pytest.raises(ConfigError, match="no queries at"):
        _round(deploy, tmp_path / "incomming")  # a typo
    assert not deploy.exists()
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"question": "How do tides work?"}\n', encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match="query #1 has no 'query' \\(or 'instruction'\\) field, nor 'messages'; its fields: 'question'",
    ):
        _round(deploy, wrong)
    assert Deployment(deploy).current_version() is None  # nothing deployed for a round that did not run
    record = _round(deploy, _write_queries(tmp_path / "right.jsonl", 0, 20))
    assert (record.round, record.decision, record.query_files) == (
        1,
        "promoted",
        [str(tmp_path / "right.jsonl")],
    )


def test_the_realign_graph_names_a_missing_or_wrong_input() -> None:
    from drpo_agents.realign import create_realign_graph

    graph = create_realign_graph(responder="sandbox", judge="sandbox", config=CONFIG).compile()
    with pytest.raises(
        ConfigError, match="a realign round needs 'deploy_dir': the path of the deployment folder"
    ):
        graph.invoke({"queries": "incoming"})
    with pytest.raises(
        ConfigError, match=r"needs 'queries': the path of a query file or folder \(got list\)"
    ):
        graph.invoke({"deploy_dir": "alignment", "queries": ["How do tides work?"]})
