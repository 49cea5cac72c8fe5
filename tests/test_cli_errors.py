"""Every misstep is one ``error:`` line: the ``drpo`` command run as a user would, with bad input,
unreachable services, a damaged run directory, a full disk, Ctrl-C, and runs whose every rewrite
or evaluation failed. Each case checks the exit code, exactly one ``error:`` line on stderr and
nothing else there, no traceback, and no secret anywhere in the output."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from drpo_agents import AlignmentArtifact
from drpo_agents.artifact import EvaluationRecord, ICLOptimizationRecord, ICLRoundRecord, LevelRecord

from .openai_server import FakeOpenAIServer, http_error
from .process_runs import wait_for_file
from .servers import _free_port

SECRET_KEY = "sk-test-NOT-A-REAL-KEY-0123456789abcdef"
PASSWORD = "pw-NOT-A-REAL-PASSWORD-42"
ENV = {
    **os.environ,
    "LANGSMITH_TRACING": "false",
    "NO_COLOR": "1",
    "COLUMNS": "120",
    "OPENAI_API_KEY": SECRET_KEY,
}
# A short sandbox search: level 0 scores the initial prompt on 2 queries, then 2 levels of rewrites.
SMALL = ["--depth", "2", "--beam-size", "1", "--n-actions", "2", "--queries-per-step", "2"]


def drpo(
    *args: str, cwd: Path, env: dict[str, str] | None = None, fault: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    module = ["-m", "tests.cli_faults", *fault, "--"] if fault else ["-m", "drpo_agents"]
    return subprocess.run(
        [sys.executable, *module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**(env or ENV), "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=300,
    )


def one_error(
    result: subprocess.CompletedProcess[str], code: int, *contains: str, secrets: tuple[str, ...] = ()
) -> str:
    """The single ``error:`` line, after checking the exit code and that nothing else is on stderr."""
    output = result.stdout + result.stderr
    assert result.returncode == code, f"exit {result.returncode}, wanted {code}: {result.stderr[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in contains:
        assert text in lines[0], lines[0]
    for secret in (SECRET_KEY, PASSWORD, *secrets):
        assert secret not in output
    return lines[0]


def default_sigint() -> None:
    """In the child: Ctrl-C's default action. A shell without job control starts background jobs
    with SIGINT ignored, a disposition children inherit and Python then keeps (no KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def resume_dir(line: str) -> str:
    match = re.search(r"drpo resume (\S+)", line)
    assert match, line
    return match.group(1)


# -- models: keys, packages, providers, endpoints ------------------------------------------------


@pytest.mark.parametrize("role", ["responder", "judge", "rewriter", "jury"])
def test_missing_api_key_names_the_variable_for_every_role(tmp_path: Path, role: str) -> None:
    env = {k: v for k, v in ENV.items() if k != "OPENAI_API_KEY"}
    result = drpo("optimize", "--sandbox", f"--{role}", "openai:gpt-4o-mini", cwd=tmp_path, env=env)
    line = one_error(result, 2, "OPENAI_API_KEY", "openai:gpt-4o-mini")
    assert not (tmp_path / "runs").exists(), "nothing may be written before the models exist"
    assert "judge" in line if role == "jury" else role in line


def test_anthropic_without_its_package_or_key_says_what_to_install_or_set(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "ANTHROPIC_API_KEY"}
    result = drpo("optimize", "--sandbox", "--judge", "anthropic:claude-sonnet-4-5", cwd=tmp_path, env=env)
    try:
        import langchain_anthropic  # noqa: F401
    except ImportError:
        one_error(result, 2, "pip install langchain-anthropic")
    else:
        one_error(result, 2, "ANTHROPIC_API_KEY")


def test_unknown_provider_is_one_line(tmp_path: Path) -> None:
    result = drpo("optimize", "--sandbox", "--rewriter", "nosuchprovider:model", cwd=tmp_path)
    one_error(result, 2, "cannot create the rewriter model from 'nosuchprovider:model'")


def test_unreachable_base_url_fails_at_once_naming_the_url(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there any more
    started = time.monotonic()
    result = drpo(
        "optimize",
        "--sandbox",
        "--judge",
        "openai:some-model",
        "--base-url",
        f"http://user:{PASSWORD}@127.0.0.1:{port}/v1",
        cwd=tmp_path,
    )
    line = one_error(result, 1, "cannot reach the model endpoint", f"127.0.0.1:{port}/v1")
    assert time.monotonic() - started < 60, "no client retries or timeouts before the error"
    assert "drpo resume" not in line  # refused before the run started


def test_base_url_without_scheme_is_a_usage_error(tmp_path: Path) -> None:
    result = drpo(
        "optimize", "--sandbox", "--judge", "openai:m", "--base-url", "127.0.0.1:8000/v1", cwd=tmp_path
    )
    one_error(result, 2, "must start with http:// or https://")


# -- services: Chroma and PostgreSQL ---------------------------------------------------------


def test_unreachable_chroma_server(tmp_path: Path) -> None:
    port = _free_port()
    result = drpo(
        "optimize", "--sandbox", "--memory", f"http://127.0.0.1:{port}", "--run-dir", "run", cwd=tmp_path
    )
    line = one_error(result, 1, "cannot reach the Chroma server", f"http://127.0.0.1:{port}")
    # Nothing ran (the memory opens before the first checkpoint): no resume hint, the same
    # command starts the run once the server is up.
    assert "drpo resume" not in line


def test_unreachable_postgres_never_prints_the_password(tmp_path: Path) -> None:
    url = f"postgresql://user:{PASSWORD}@127.0.0.1:{_free_port()}/db"
    result = drpo("optimize", "--sandbox", "--checkpointer", url, "--run-dir", "run", cwd=tmp_path)
    line = one_error(result, 1, "cannot connect to PostgreSQL at postgresql://user:[redacted]@127.0.0.1")
    assert "drpo resume" not in line  # nothing was checkpointed: nothing to resume


@pytest.mark.server
def test_refusing_postgres_never_prints_the_password(tmp_path: Path, postgres_url: str) -> None:
    parts = urlparse(postgres_url)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port}"
    url = urlunparse(parts._replace(netloc=netloc, path="/no_such_database"))
    result = drpo("optimize", "--sandbox", "--checkpointer", url, "--run-dir", "run", cwd=tmp_path)
    one_error(result, 1, "cannot connect to PostgreSQL", "no_such_database")


# -- run directories: foreign, damaged, read-only, full --------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small sandbox run (copied by the tests that damage it)."""
    cwd = tmp_path_factory.mktemp("finished")
    result = drpo("optimize", "--sandbox", *SMALL, "--quiet", "--run-dir", "run", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "a successful run writes nothing to stderr"
    return cwd / "run"


def _copy(run: Path, target: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, target))


def test_resume_refuses_a_directory_of_another_tool(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.bin").write_bytes(b"\x00\x01")
    one_error(drpo("resume", "other", cwd=tmp_path), 2, "other is not a run directory (no config.json)")
    one_error(drpo("resume", "missing", cwd=tmp_path), 2, "no run directory missing")
    (tmp_path / "other" / "config.json").write_text("{}", encoding="utf-8")  # a Python-made run
    one_error(
        drpo("resume", "other", cwd=tmp_path), 2, "not started by `drpo optimize`", "drpo_agents.resume("
    )


@pytest.mark.parametrize("content", ['["a", "list"]', '{"tool": "something else"}', "\x00garbage"])
def test_resume_refuses_a_cli_json_that_is_not_ours(tmp_path: Path, content: str) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "cli.json").write_text(content, encoding="utf-8")
    one_error(drpo("resume", "run", cwd=tmp_path), 2, "cli.json")


@pytest.mark.slow
def test_resume_refuses_garbage_checkpoints(tmp_path: Path, finished_run: Path) -> None:
    run = _copy(finished_run, tmp_path / "run")
    (run / "checkpoints.sqlite").write_bytes(b"this is not a database" * 100)
    one_error(
        drpo("resume", "run", cwd=tmp_path), 2, "checkpoints.sqlite is damaged or not a checkpoint database"
    )
    (run / "checkpoints.sqlite").unlink()
    sqlite3.connect(run / "checkpoints.sqlite").execute("CREATE TABLE other (x)").connection.commit()
    one_error(drpo("resume", "run", cwd=tmp_path), 2, "not a LangGraph checkpoint database")
    (run / "checkpoints.sqlite").unlink()
    one_error(drpo("resume", "run", cwd=tmp_path), 2, "no checkpoints.sqlite")


@pytest.mark.slow
def test_resume_refuses_a_damaged_config(tmp_path: Path, finished_run: Path) -> None:
    run = _copy(finished_run, tmp_path / "run")
    (run / "config.json").write_text("{not json", encoding="utf-8")
    one_error(drpo("resume", "run", cwd=tmp_path), 2, "config.json is damaged")
    (run / "config.json").unlink()
    one_error(drpo("resume", "run", cwd=tmp_path), 2, "is not a run directory (no config.json)")


def test_run_directory_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    one_error(
        drpo("optimize", "--sandbox", "--run-dir", "afile/run", cwd=tmp_path),
        1,
        "Not a directory",
        "afile/run",
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories; see the EROFS test")
def test_read_only_parent_directory(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        one_error(
            drpo("optimize", "--sandbox", "--run-dir", "locked/run", cwd=tmp_path), 1, "Permission denied"
        )
    finally:
        parent.chmod(0o755)


def test_read_only_file_system(tmp_path: Path) -> None:
    result = drpo("optimize", "--sandbox", "--run-dir", "run", cwd=tmp_path, fault=["erofs"])
    one_error(result, 1, "Read-only file system", "run")


@pytest.mark.slow
def test_disk_full_while_writing_the_artifact_then_resume_finishes(tmp_path: Path) -> None:
    args = ("optimize", "--sandbox", *SMALL, "--run-dir", "run")
    line = one_error(
        drpo(*args, cwd=tmp_path, fault=["enospc"]), 1, "No space left on device", "artifact.json"
    )
    assert resume_dir(line) == "run"
    assert not (tmp_path / "run" / "artifact.json").exists()
    assert not (tmp_path / "run" / "artifact.json.tmp").exists(), "no half-written file left behind"
    resumed = drpo("resume", "run", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    assert len(AlignmentArtifact.load(tmp_path / "run" / "artifact.json").levels) == 3


@pytest.mark.slow
def test_an_unexpected_error_is_one_line_unless_debugging(tmp_path: Path) -> None:
    args = ("optimize", "--sandbox", *SMALL, "--run-dir", "run")
    line = one_error(drpo(*args, cwd=tmp_path, fault=["bug"]), 1, "unexpected RuntimeError", "DRPO_DEBUG=1")
    assert "boom in the report" in line and resume_dir(line) == "run"
    again = ("optimize", "--sandbox", *SMALL, "--run-dir", "debug-run")  # "run" holds a run now
    debug = drpo(*again, cwd=tmp_path, fault=["bug"], env={**ENV, "DRPO_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "boom in the report" in debug.stderr


def test_a_driver_cleanup_warning_beside_the_error_is_not_shown(tmp_path: Path) -> None:
    """psycopg logs "error ignored in rollback ..." while it closes a connection that the run's
    error is leaving (CI once saw it beside a lost Chroma server's message)."""
    script = """
import logging
import drpo_agents.cli as cli
import drpo_agents.cli.dispatch as dispatch
from drpo_agents.errors import ServiceUnavailableError

def failing_app(**options):
    logging.getLogger("psycopg").warning(
        "error ignored in rollback on %s: %s", "<AsyncConnection>", "connection not in pipeline mode"
    )
    logging.getLogger("psycopg").warning("unknown PostgreSQL timezone: %r; will use UTC", "Mars/Olympus")
    raise ServiceUnavailableError("the Chroma server stopped answering")

dispatch.app = failing_app
cli.main()
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # Only the cleanup noise goes: another psycopg warning still reaches the person.
    assert lines == [
        "unknown PostgreSQL timezone: 'Mars/Olympus'; will use UTC",
        "error: the Chroma server stopped answering",
    ], result.stderr


# -- Ctrl-C -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_mid_run_says_how_to_resume_and_resume_finishes(tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    command = [sys.executable, "-m", "tests.cli_faults", "hang-rewriter", str(marker), "--"]
    process = subprocess.Popen(
        # One call at a time: the calls waiting behind the hung rewrite are cancelled before they
        # start, which is when langgraph drops a coroutine that Python then warns about.
        [*command, "optimize", "--sandbox", *SMALL, "--max-concurrency", "1", "--run-dir", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        preexec_fn=default_sigint,
    )
    try:
        # level 2's rewrite has started and hangs
        wait_for_file(process, marker, "the run never reached level 2")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    line = one_error(result, 130, "interrupted")
    assert resume_dir(line) == "run"
    assert not (tmp_path / "run" / "artifact.json").exists()
    resumed = drpo("resume", "run", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert len(json.loads(resumed.stdout)["reward_curve"]) == 3


def test_langgraph_devs_blocking_check_on_drpos_own_loop_says_what_to_do() -> None:
    from drpo_agents.errors import DRPOError
    from drpo_agents.infra.calls import run_sync

    class BlockingError(Exception):  # what `langgraph dev`'s check (blockbuster) raises
        pass

    async def blocked() -> None:
        raise BlockingError("Blocking call to os.mkdir")

    with pytest.raises(DRPOError, match="start the server with --allow-blocking"):
        run_sync(blocked())


def test_ctrl_c_while_the_command_loads_is_one_line_too(tmp_path: Path) -> None:
    """A Ctrl-C in the first second, while LangChain and LangGraph load, is one ``error:`` line and
    exit 130, not Python's traceback (the entry point loads them inside its own handling)."""
    process = subprocess.Popen(
        # -X importtime reports each import on stderr as it finishes: the first LangChain module's
        # line says the command's libraries are loading.
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "drpo_agents",
            "optimize",
            "--sandbox",
            "--run-dir",
            "run",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=ENV,
        preexec_fn=default_sigint,
    )
    try:
        assert process.stderr is not None
        loaded: list[str] = []
        for line in process.stderr:
            loaded.append(line)
            if "langchain_core" in line:
                break
        # Nothing drpo needs to run the command loaded before the entry point took over.
        assert not any("langchain" in line or "langgraph" in line for line in loaded[:-1]), loaded
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:
        process.kill()
    shown = [line for line in rest.splitlines() if not line.startswith("import time:")]
    assert process.returncode == 130 and shown == ["error: interrupted"], rest[-2000:]
    assert not (tmp_path / "run").exists()


# -- failure must not look like success -------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(seed=0) as fake:
        yield fake


@pytest.mark.slow
@pytest.mark.server
def test_a_rewriter_that_always_fails_exits_3_and_inspect_counts_it(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    server.add_fault(http_error(400, role="rewriter", times=1000))
    args = ("--rewriter", "openai:sandbox-rewriter", "--base-url", server.base_url, "--run-dir", "run")
    result = drpo("optimize", "--sandbox", *SMALL, *args, cwd=tmp_path)
    line = one_error(result, 3, "no valid candidate", "level 1", "Error code: 400", "drpo inspect run")
    assert line.count("injected HTTP 400") == 1
    assert result.stdout.count("FAILED") == 2 and "No valid candidate" in result.stdout
    artifact = AlignmentArtifact.load(tmp_path / "run" / "artifact.json")  # still written
    assert artifact.best_candidate_id == "c0" and artifact.no_valid_candidate()

    inspected = drpo("inspect", "run", cwd=tmp_path)
    assert inspected.returncode == 0 and inspected.stderr == "", inspected.stderr
    assert "Failed model calls per role" in inspected.stdout
    row = next(line for line in inspected.stdout.splitlines() if line.strip().startswith("rewriter"))
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[:4] == ["rewriter", "2", "0", "0"], row  # 2 failed, none answered, nothing rejected
    assert "Error code: 400" in cells[4]
    summary = json.loads(drpo("inspect", "run", "--json", cwd=tmp_path).stdout)
    assert summary["failures"]["rewriter"]["failed"] == 2
    assert "injected HTTP 400" in summary["failures"]["rewriter"]["first_error"]
    assert summary["failures"]["judge"]["failed"] == summary["failures"]["responder"]["failed"] == 0
    assert summary["no_valid_candidate"] and set(summary["failed_levels"]) == {"1", "2"}

    # Resuming the finished run gives the same verdict (and the same exit code).
    one_error(drpo("resume", "run", "--quiet", cwd=tmp_path), 3, "no valid candidate")


@pytest.mark.slow
@pytest.mark.server
def test_a_judge_failing_on_one_level_marks_that_level_failed(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    # Level 0 scores c0 on 2 queries; level 1 scores its 2 children on 2 queries each.
    server.add_fault(http_error(400, role="judge", step="score", after=2, times=4))
    args = ("--judge", "openai:sandbox-judge", "--base-url", server.base_url, "--run-dir", "run")
    result = drpo("optimize", "--sandbox", *SMALL, *args, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr  # no noise from any library
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert "FAILED" in rows["1"] and "evaluate c1-0-0" in rows["1"]  # its first error (wrapped)
    assert "FAILED" not in rows["0"] and "FAILED" not in rows["2"]
    artifact = AlignmentArtifact.load(tmp_path / "run" / "artifact.json")
    assert set(artifact.failed_levels()) == {1} and not artifact.no_valid_candidate()
    assert artifact.failure_counts()["judge"].failed == 4


def test_failure_counts_assign_each_record_to_its_role() -> None:
    def level(number: int, failures: list[str], rewards: list[float]) -> LevelRecord:
        return LevelRecord(
            level=number,
            query_ids=["q1"],
            beam=["c0"],
            beam_mean_rewards=[3.0],
            level_rewards=rewards,
            depth_limit=2,
            failures=failures,
        )

    artifact = AlignmentArtifact(
        run_id="r",
        system_prompt="p",
        evaluations=[
            EvaluationRecord(candidate_id="c1", level=1, query_id="q1", query="q", error="APIError: down"),
            EvaluationRecord(
                candidate_id="c1", level=1, query_id="q2", query="q", answer="a", error="judge bad"
            ),
            EvaluationRecord(
                candidate_id="c1",
                level=1,
                query_id="q3",
                query="q",
                answer="a",
                reward=3,
                jury_errors=[None, "x"],
            ),
        ],
        levels=[
            level(0, ["select_aspects q9: StructuredOutputError: no"], [3.0]),
            level(
                1,
                [
                    "rewrite c0: proposal 1 rejected: too long",
                    "rewrite c0: BadRequestError: 400",
                    "evaluate c1-0-0: APIError: down",
                ],
                [],
            ),
        ],
        icl_optimization=[
            ICLOptimizationRecord(
                example_id="e",
                query="q",
                original_answer="a",
                final_answer="a",
                rounds=[ICLRoundRecord(round=1, error="rewrite failed")],
            )
        ],
    )
    counts = artifact.failure_counts()
    assert (counts["responder"].failed, counts["responder"].first_error) == (1, "APIError: down")
    assert (counts["judge"].failed, counts["judge"].first_error) == (3, "judge bad")
    assert (counts["rewriter"].failed, counts["rewriter"].rejected) == (2, 1)
    assert counts["rewriter"].first_error == "proposal 1 rejected: too long"
    assert artifact.failed_levels() == {1: "rewrite c0: proposal 1 rejected: too long"}
    assert artifact.no_valid_candidate()


def test_a_new_run_never_reuses_a_folder_a_run_has_written_in(tmp_path: Path) -> None:
    first = drpo("optimize", "--sandbox", "--depth", "1", "--quiet", "--run-dir", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    line = one_error(
        drpo("optimize", "--sandbox", "--run-dir", "run", cwd=tmp_path), 2, "already holds a run"
    )
    assert "drpo resume run" in line
    # A run that stopped before its first checkpoint left only its settings: the same command
    # starts it again in that folder.
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "config.json").write_text("{}", encoding="utf-8")
    again = drpo("optimize", "--sandbox", "--depth", "1", "--quiet", "--run-dir", "early", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_a_chroma_url_holding_a_secret_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    for url in (f"http://drpo:{PASSWORD}@127.0.0.1:8000", f"http://127.0.0.1:8000/?token={PASSWORD}"):
        one_error(
            drpo("optimize", "--sandbox", "--memory", url, "--run-dir", "run", cwd=tmp_path), 2, "Chroma"
        )
        assert not (tmp_path / "run").exists()


def test_ctrl_c_delivered_to_a_worker_thread_still_stops_a_blocking_run() -> None:
    """The kernel may hand a process's SIGINT to any thread; Python then only raises
    KeyboardInterrupt when the main thread wakes. run_sync waits in slices, so it wakes."""
    script = """
import asyncio, signal, threading
from drpo_agents.infra.calls import run_sync

async def work():
    await asyncio.sleep(5)
    print("finished", flush=True)

def interrupt_from_this_thread():
    threading.Event().wait(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=interrupt_from_this_thread).start()
try:
    run_sync(work())
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, preexec_fn=default_sigint
    )
    assert result.stdout.split() == ["interrupted"], result.stdout + result.stderr
