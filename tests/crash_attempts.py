"""Crash attempts: run a sandbox run to its end through SIGKILLs at chosen moments, and judge the result.

An *attempt* starts a run in a process forked by the zygote (:mod:`tests.crash_zygote`), kills
it at a moment, resumes it in a new process (which may be killed again), answers its review
when it pauses for one, and goes on until the run is done. It is judged against the same run
uninterrupted (the *reference*): the artifact (``created_at`` aside), the Chroma record sets
(ids, metadata and documents of every collection), a report that shows the final artifact, a
readable trace, and the model calls: none whose response had reached the run before a crash is
asked again (*repeated*); calls in flight at the kill may be (*redone*, at-least-once).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conftest import REPO_ROOT
from .test_golden import _first_difference as first_difference

ENV = {
    **os.environ,
    "LANGSMITH_TRACING": "false",
    "ANONYMIZED_TELEMETRY": "False",
    "PYTHONPATH": str(REPO_ROOT),
}
RESTART_ERRORS = ("nothing to resume", "not a run directory")


class Zygote:
    """The zygote process: one request at a time, each answered by a freshly forked process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_zygote", "serve"],
            cwd=REPO_ROOT,
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the crash zygote exited with code {self.process.wait()}")
        return dict(json.loads(line))

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


@dataclass(frozen=True)
class Place:
    """Where an attempt keeps its run: a directory, and optionally server checkpoints and memory."""

    run_dir: Path
    checkpointer: str | None = None
    memory: str | None = None


@dataclass
class Step:
    """One process of an attempt: what it was asked, how it ended, where its logs are."""

    request: dict[str, Any]
    answer: dict[str, Any]

    @property
    def killed(self) -> bool:
        return "signal" in self.answer

    def lines(self, name: str) -> list[str]:
        path = Path(self.request["log_dir"]) / f"{name}.log"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def killed_at(self) -> str:
        """The label of the moment the process died at (for a kill from outside: when it came)."""
        moments = self.lines("moments")
        if self.request.get("kill_after_s") is not None or not moments:
            return f"time {self.request.get('kill_after_s')} s after {len(moments)} moments"
        return moments[-1].split(" ", 1)[1]


@dataclass
class Attempt:
    """A run taken to its end through the planned kills."""

    config: str
    kills: list[float | str]  # kill moments (numbers or kinds), or the delays of kills from outside
    steps: list[Step] = field(default_factory=list)
    dump: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def moments(self) -> int:
        return sum(int(s.answer.get("moments", 0)) for s in self.steps if not s.killed)

    def generated(self, killed_only: bool = False) -> Counter[str]:
        return Counter(k for s in self.steps if s.killed or not killed_only for k in s.lines("generated"))

    def labels(self) -> list[str]:
        """Every moment label, in order, over the attempt's processes (of the reference: the run)."""
        return [line.split(" ", 1)[1] for s in self.steps for line in s.lines("moments")]


def run_attempt(
    zygote: Zygote,
    config: str,
    place: Place,
    log_root: Path,
    kills: list[int | str],
    delays: list[float] | None = None,
) -> Attempt:
    """Take one run to its end: kill the k-th process at moment ``kills[k]`` (a number counted over
    the processes since the previous kill, or a kind: its first moment) or, with ``delays``, that
    many seconds after it started."""
    pending: list[float | str] = list(delays if delays is not None else kills)
    attempt = Attempt(config, list(pending))
    current = pending.pop(0) if pending else None
    mode = "start"
    # Each attempt is its own run (run id and folder), as a run started at another time would be;
    # the dump writes that id as "RUN", so attempts compare with the reference on content.
    common = {
        "config": config,
        "run_dir": str(place.run_dir),
        "run_id": f"{config}-{place.run_dir.parent.name}",
    }
    common |= {"checkpointer": place.checkpointer, "memory": place.memory}
    for index in range(20):
        request = {**common, "mode": mode, "log_dir": str(log_root / f"p{index}")}
        request["kill_after_s" if delays is not None else "kill_at"] = current
        step = Step(request, zygote.ask(request))
        attempt.steps.append(step)
        if step.killed:
            current, mode = (pending.pop(0) if pending else None), "resume"
            continue
        outcome = step.answer.get("outcome")
        if step.answer.get("exit") != 0 or outcome not in ("done", "review", "error"):
            attempt.error = f"process {index} failed: {_output_tail(request)}"
            return attempt
        if isinstance(current, int) and delays is None:
            current -= int(step.answer["moments"])  # the kill lands in a later process of this run
        if outcome == "done":
            break
        if outcome == "review":
            mode = "decide"
        elif any(text in step.answer["error"] for text in RESTART_ERRORS):
            mode = "start"  # killed before its first checkpoint: a user starts it again
        else:
            attempt.error = f"process {index} ({mode}): {step.answer['error']}"
            return attempt
    else:
        attempt.error = "the run did not finish in 20 processes"
        return attempt
    dump_request = {**common, "mode": "dump", "log_dir": str(log_root / "dump")}
    answer = zygote.ask(dump_request)
    if answer.get("exit") != 0:
        attempt.error = f"reading the results failed: {_output_tail(dump_request)}"
    attempt.dump = answer
    return attempt


def _output_tail(request: dict[str, Any]) -> str:
    path = Path(request["log_dir"]) / "output.txt"
    return path.read_text(encoding="utf-8")[-1500:] if path.exists() else "(no output)"


@dataclass
class Verdict:
    """How an attempt compares with the reference."""

    attempt: Attempt
    artifact_difference: str | None = None
    memory_difference: str | None = None
    report_current: bool = True
    trace_error: str = ""
    repeated: int = 0
    redone: int = 0

    @property
    def crashes(self) -> int:
        return sum(s.killed for s in self.attempt.steps)

    @property
    def equal(self) -> bool:
        return not self.attempt.error and self.artifact_difference is None and self.memory_difference is None

    @property
    def ok(self) -> bool:
        return self.equal and self.report_current and not self.trace_error and self.repeated == 0

    def describe(self) -> str:
        where = ", ".join(s.killed_at() for s in self.attempt.steps if s.killed)
        problems = [self.attempt.error] if self.attempt.error else []
        if self.artifact_difference:
            problems.append(f"artifact differs at {self.artifact_difference}")
        if self.memory_difference:
            problems.append(f"memory differs: {self.memory_difference}")
        if not self.report_current:
            problems.append("report.html does not show the final artifact")
        if self.trace_error:
            problems.append(f"trace unreadable: {self.trace_error}")
        if self.repeated:
            problems.append(f"{self.repeated} finished calls asked again")
        return f"{self.attempt.config} kills {self.attempt.kills} at [{where}]: " + (
            "; ".join(problems) or "ok"
        )


def judge(reference: Attempt, attempt: Attempt) -> Verdict:
    """Compare an attempt with the uninterrupted run of the same configuration."""
    verdict = Verdict(attempt)
    if attempt.error:
        return verdict
    verdict.artifact_difference = first_difference(reference.dump["artifact"], attempt.dump["artifact"])
    verdict.memory_difference = memory_difference(reference.dump["memory"], attempt.dump["memory"])
    verdict.report_current = bool(attempt.dump["report_current"])
    verdict.trace_error = str(attempt.dump["trace_error"])
    verdict.repeated, verdict.redone = repeated_calls(reference, attempt)
    return verdict


def repeated_calls(reference: Attempt, attempt: Attempt) -> tuple[int, int]:
    """(finished calls asked again, in-flight calls redone), counted per call identity.

    A call beyond the reference's count of the same call is either a redo of one in flight at a
    kill (allowed) or, past those, a repeat of one whose response had reached the run.
    """
    extra = attempt.generated() - reference.generated()
    killed = attempt.generated(killed_only=True)
    finished = Counter(k for s in attempt.steps if s.killed for k in s.lines("finished"))
    in_flight = killed - finished
    repeated = sum(min(finished[k], max(0, n - in_flight[k])) for k, n in extra.items())
    redone = sum(min(n, in_flight[k]) for k, n in extra.items())
    return repeated, redone


def memory_difference(expected: dict[str, list[Any]], actual: dict[str, list[Any]]) -> str | None:
    """The first collection whose records differ, with counts and one record only on each side."""
    for name in sorted(set(expected) | set(actual)):
        want = {json.dumps(r) for r in expected.get(name, [])}
        got = {json.dumps(r) for r in actual.get(name, [])}
        if want != got:
            missing, extra = sorted(want - got), sorted(got - want)
            return (
                f"{name}: {len(want)} records expected, {len(got)} found; {len(missing)} missing"
                f"{' e.g. ' + missing[0][:160] if missing else ''}; {len(extra)} extra"
                f"{' e.g. ' + extra[0][:160] if extra else ''}"
            )
    return None


def plan_kills(rng: random.Random, total: int, crashes: int) -> list[int | str]:
    """Kill moments for one attempt: the first drawn over the whole run's ``total`` moments, each
    later one over the moments left after the earlier kills (what the resumed process has ahead)."""
    kills: list[int | str] = []
    left = total
    for _ in range(crashes):
        kill = rng.randint(1, max(1, left))
        kills.append(kill)
        left -= kill
    return kills


# Moment kinds every run reaches: if one is missing, the instrumentation no longer sees it (the
# library changed under it) and the attempts would pass without testing anything.
EVERY_RUN_KINDS = (
    "call-start",
    "call-end",
    "call-returned",
    "checkpoint-aput:",
    "checkpoint-aput_writes:",
    "chroma-upsert-critiques",
    "finalize",
    "file-artifact.json",
    "file-report.html",
    "file-config.json",
    "trace-line",
)


def check_instrumented(reference: Attempt) -> None:
    """Fail loudly where the moments went blind: a kind never reached, or calls never seen returning."""
    labels = reference.labels()
    missing = [kind for kind in EVERY_RUN_KINDS if not any(label.startswith(kind) for label in labels)]
    assert not missing, f"the uninterrupted {reference.config} run never reached {missing}"
    finished = Counter(k for s in reference.steps for k in s.lines("finished"))
    unseen = reference.generated() - finished
    assert not unseen, f"{sum(unseen.values())} model calls were never seen returning to their plan"


def attempts_for(
    zygote: Zygote,
    config: str,
    place_for: Callable[[str], Place],
    root: Path,
    plan: Callable[[Attempt], list[list[int | str]]],
) -> tuple[Attempt, list[Verdict]]:
    """The reference run of ``config`` and one judged attempt per kill plan ``plan`` draws for it."""
    reference = run_attempt(zygote, config, place_for("reference"), root / "reference" / "logs", [])
    assert not reference.error, reference.error
    check_instrumented(reference)
    verdicts = []
    for index, kills in enumerate(plan(reference)):
        name = f"attempt-{index}"
        attempt = run_attempt(zygote, config, place_for(name), root / name / "logs", kills)
        verdicts.append(judge(reference, attempt))
    return reference, verdicts
