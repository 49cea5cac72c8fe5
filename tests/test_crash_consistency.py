"""A run killed (SIGKILL) at moments drawn across the whole run and resumed ends as if never killed.

Each configuration runs once uninterrupted (its M moments counted), then once per kill plan:
moments drawn with a fixed seed over [1, M], some plans crashing the same run two or three
times, plus the first moment of each rare kind (review, finalize, file renames, the gap between
the critique and lessons writes). See :mod:`tests.crash_moments` for what a moment is and
:mod:`tests.crash_attempts` for how an attempt is judged.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .crash_attempts import (
    Attempt,
    Place,
    Step,
    Verdict,
    Zygote,
    attempts_for,
    memory_difference,
    plan_kills,
    repeated_calls,
)
from .crash_zygote import CONFIGS

# Crashes per attempt for each configuration: 5 attempts, 9 crashes, drawn uniformly (27 in all).
CRASHES = (1, 1, 2, 2, 3)
# Rare moment kinds that uniform draws would seldom hit, each killed on purpose at its first
# occurrence in one configuration.
TARGETED = {
    "icl-validation-review": (
        "chroma-upsert-icl:after",
        "review-interrupt",
        "review-decided",
        "finalize",
    ),
    "gate": (
        "chroma-upsert-critiques:after",  # between the full collection and the lessons
        "file-artifact.json:before",
        "file-artifact.json:after",
    ),
    "search": (
        "file-config.json:after",
        "checkpoint-setup:before",  # the SQLite file exists, its tables do not yet
        "chroma-upsert-critiques:after",
        "chroma-upsert-lessons:after",
        "file-report.html:before",
        "file-report.html:after",
    ),
}


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    process = Zygote()
    yield process
    process.close()


def _plans(config: str, seed: int) -> Callable[[Attempt], list[list[int | str]]]:
    def plan(reference: Attempt) -> list[list[int | str]]:
        rng = random.Random(f"{config}-{seed}")
        drawn: list[list[int | str]] = [plan_kills(rng, reference.moments, n) for n in CRASHES]
        labels = reference.labels()
        missing = [kind for kind in TARGETED[config] if not any(x.startswith(kind) for x in labels)]
        assert not missing, f"the uninterrupted {config} run never reached {missing}"
        return drawn + [[kind] for kind in TARGETED[config]]

    return plan


def _assert_all_ok(reference: Attempt, verdicts: list[Verdict]) -> None:
    failed = [v.describe() for v in verdicts if not v.ok]
    summary = (
        f"{len(verdicts) - len(failed)}/{len(verdicts)} attempts ok "
        f"(reference: {reference.moments} moments; "
        f"{sum(v.crashes for v in verdicts)} crashes; {sum(v.redone for v in verdicts)} in-flight calls redone)"
    )
    assert not failed, summary + "\n" + "\n".join(failed)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_resumed_run_equals_the_uninterrupted_one_whatever_the_moments_of_its_crashes(
    zygote: Zygote, tmp_path: Path, config: str
) -> None:
    reference, verdicts = attempts_for(
        zygote, config, lambda name: Place(tmp_path / name / "run"), tmp_path, _plans(config, 16)
    )
    _assert_all_ok(reference, verdicts)


def _fresh_database(url: str) -> str:
    import psycopg

    name = f"crash_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def _empty_chroma(url: str) -> str:
    import chromadb

    host, port = url.split("//")[1].rsplit(":", 1)
    client = chromadb.HttpClient(host=host, port=int(port))
    for collection in client.list_collections():
        client.delete_collection(collection.name)
    return url


@pytest.mark.slow
@pytest.mark.server
def test_resume_with_postgres_checkpoints_and_a_chroma_server_equals_the_uninterrupted_run(
    zygote: Zygote, tmp_path: Path, postgres_url: str, chroma_server: str
) -> None:
    def place(name: str) -> Place:
        return Place(tmp_path / name / "run", _fresh_database(postgres_url), _empty_chroma(chroma_server))

    def plan(reference: Attempt) -> list[list[int | str]]:
        return [plan_kills(random.Random(f"server-{n}"), reference.moments, n % 2 + 1) for n in range(4)]

    reference, verdicts = attempts_for(zygote, "search", place, tmp_path, plan)
    _assert_all_ok(reference, verdicts)


def _step(folder: Path, killed: bool, generated: list[str], finished: list[str]) -> Step:
    folder.mkdir(parents=True)
    (folder / "generated.log").write_text("".join(f"{k}\n" for k in generated), encoding="utf-8")
    (folder / "finished.log").write_text("".join(f"{k}\n" for k in finished), encoding="utf-8")
    return Step({"log_dir": str(folder)}, {"signal": 9} if killed else {"exit": 0, "moments": 1})


def test_a_finished_call_asked_again_is_repeated_and_one_in_flight_at_the_kill_is_redone(
    tmp_path: Path,
) -> None:
    reference = Attempt("search", [], [_step(tmp_path / "r", False, ["a", "b", "c"], ["a", "b", "c"])])
    # Killed with a's response returned and b in flight; the resumed process asks both again.
    killed = _step(tmp_path / "p0", True, ["a", "b"], ["a"])
    attempt = Attempt("search", [5], [killed, _step(tmp_path / "p1", False, ["a", "b", "c"], [])])
    assert repeated_calls(reference, attempt) == (1, 1)
    resumed_well = Attempt("search", [5], [killed, _step(tmp_path / "p2", False, ["b", "c"], [])])
    assert repeated_calls(reference, resumed_well) == (0, 1)


def test_memory_difference_names_the_collection_and_what_is_missing() -> None:
    expected = {"drpo-critiques": [["1", "{}", "x"], ["2", "{}", "y"]], "lessons": [["1", "{}", "x"]]}
    assert memory_difference(expected, expected) is None
    found = memory_difference(expected, {**expected, "lessons": []})
    assert found is not None and found.startswith("lessons: 1 records expected, 0 found; 1 missing")
