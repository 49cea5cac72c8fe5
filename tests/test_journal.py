"""The response journal: calls named by task scope and ordinal, replayed when a task runs again, inert elsewhere."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from drpo_agents import DRPOConfig, load_training_queries, optimize
from drpo_agents.infra.cache import SQLiteLLMCache
from drpo_agents.infra.call_identity import current_call, task_scope
from drpo_agents.infra.calls import ModelCall, ParallelPlans, arun_plan, plan_node, run_plan, run_sync
from drpo_agents.infra.journal import ResponseJournal, journaled_copies
from drpo_agents.infra.run_files import CACHE_FILE, JOURNAL_FILE

from .fakes import ScriptedChatModel, scripted
from .process_runs import lines, run_module


def counting_model() -> ScriptedChatModel:
    """A model whose every real call answers something new, so a replay is visible."""
    numbers = itertools.count()
    return scripted(lambda messages: f"answer {next(numbers)}", tools=False)


def journaled(model: ScriptedChatModel, journal: ResponseJournal) -> Any:
    (copy,) = journaled_copies([model], journal)
    return copy


def ask(model: Any, question: str) -> Generator[ModelCall, Any, str]:
    reply: AIMessage = yield ModelCall(model, question)
    return str(reply.content)


def two_asks(model: Any, question: str) -> Generator[ModelCall, Any, list[str]]:
    """The same prompt twice in one plan: told apart by their ordinals."""
    first = yield from ask(model, question)
    second = yield from ask(model, question)
    return [first, second]


def jury(model: Any, question: str) -> Generator[Any, Any, list[Any]]:
    """Two identical sub-plans after one call: told apart by their sub-plan paths."""
    opening = yield from ask(model, question)
    verdicts = yield ParallelPlans([two_asks(model, question), two_asks(model, question)])
    return [opening, verdicts]


def test_a_task_run_again_replays_its_finished_calls_in_order(tmp_path: Path) -> None:
    model = counting_model()
    scope = task_scope("evaluate", {"candidate_id": "c1-0-0", "query_id": "q1"})
    first = run_plan(two_asks(journaled(model, ResponseJournal(tmp_path / "j.sqlite")), "Why?"), scope=scope)
    assert first == ["answer 0", "answer 1"]  # one prompt, two calls: both made

    reopened = ResponseJournal(tmp_path / "j.sqlite")  # a resumed process
    again = run_plan(two_asks(journaled(model, reopened), "Why?"), scope=scope)
    assert again == first and len(model.calls) == 2
    assert (reopened.replayed, reopened.stored, len(reopened)) == (2, 0, 2)


def test_replayed_responses_keep_their_token_counts(tmp_path: Path) -> None:
    model, journal = counting_model(), ResponseJournal(tmp_path / "j.sqlite")
    scope = task_scope("rewrite", {"parent_id": "c0-0-0"})

    def raw(model: Any) -> Generator[ModelCall, Any, AIMessage]:
        reply: AIMessage = yield ModelCall(model, "Rewrite.")
        return reply

    made = run_plan(raw(journaled(model, journal)), scope=scope)
    replayed = run_plan(raw(journaled(model, journal)), scope=scope)
    assert replayed.content == made.content and made.usage_metadata and replayed.usage_metadata
    # LangChain marks a cache hit with total_cost 0; our accounting counts tokens, which are kept.
    tokens = ("input_tokens", "output_tokens", "total_tokens")
    assert [replayed.usage_metadata[k] for k in tokens] == [made.usage_metadata[k] for k in tokens]


def test_another_task_with_the_same_prompt_is_not_served_from_the_journal(tmp_path: Path) -> None:
    model, journal = counting_model(), ResponseJournal(tmp_path / "j.sqlite")
    copy = journaled(model, journal)
    a = run_plan(ask(copy, "Why?"), scope=task_scope("evaluate", {"query_id": "q1"}))
    b = run_plan(ask(copy, "Why?"), scope=task_scope("evaluate", {"query_id": "q2"}))
    c = run_plan(ask(copy, "Why?"), scope=task_scope("validate", {"query_id": "q1"}))
    assert [a, b, c] == ["answer 0", "answer 1", "answer 2"] and len(journal) == 3


def test_the_journal_is_inert_outside_a_task_scope(tmp_path: Path) -> None:
    model, journal = counting_model(), ResponseJournal(tmp_path / "j.sqlite")
    copy = journaled(model, journal)
    assert run_plan(ask(copy, "Why?")) == "answer 0"
    assert run_plan(ask(copy, "Why?")) == "answer 1"
    assert copy.invoke("Why?").content == "answer 2"
    assert len(journal) == 0 and current_call() is None


def test_sub_plans_get_their_own_paths_and_sync_and_async_name_calls_alike(tmp_path: Path) -> None:
    model, journal = counting_model(), ResponseJournal(tmp_path / "j.sqlite")
    scope = task_scope("evaluate", {"query_id": "q1"})
    seen: list[str] = []

    def recording(messages: list[BaseMessage]) -> str:
        identity = current_call()
        assert identity is not None and identity.scope == scope
        seen.append(identity.path)
        return f"answer {len(seen) - 1}"

    model.script = recording
    first = run_plan(jury(journaled(model, journal), "Why?"), scope=scope)
    assert seen == ["0", "1.0.0", "1.0.1", "1.1.0", "1.1.1"]
    assert first == ["answer 0", [["answer 1", "answer 2"], ["answer 3", "answer 4"]]]
    # The async driver names the calls the same way: everything is replayed, nothing is called.
    again = asyncio.run(arun_plan(jury(journaled(model, journal), "Why?"), scope=scope))
    assert again == first and len(seen) == 5 and journal.replayed == 5


def test_plan_node_scopes_its_calls_by_node_name_and_payload(tmp_path: Path) -> None:
    model, journal = counting_model(), ResponseJournal(tmp_path / "j.sqlite")
    copy = journaled(model, journal)
    node = plan_node("evaluate", lambda task, config: ask(copy, "Why?"))
    first = node.invoke({"query_id": "q1", "level": 1})
    assert node.invoke({"level": 1, "query_id": "q1"}) == first  # same payload (key order aside)
    assert node.invoke({"query_id": "q1", "level": 2}) != first
    assert asyncio.run(node.ainvoke({"query_id": "q1", "level": 1})) == first
    assert len(model.calls) == 2


def test_the_memo_cache_behind_the_journal_still_serves_other_tasks(tmp_path: Path) -> None:
    model = counting_model()
    journal, memo = ResponseJournal(tmp_path / "j.sqlite"), SQLiteLLMCache(tmp_path / "memo.sqlite")
    copy = journaled(model.model_copy(update={"cache": memo}), journal)
    a = run_plan(ask(copy, "Why?"), scope=task_scope("select_aspects", {"query_id": "q1"}))
    b = run_plan(ask(copy, "Why?"), scope=task_scope("select_aspects", {"query_id": "q2"}))
    assert a == b == "answer 0" and memo.hits == 1 and len(journal) == 1
    assert copy.invoke("Why?").content == "answer 0"  # outside a scope: the memo alone


def test_a_response_is_encoded_once_for_the_journal_and_the_memo_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import drpo_agents.infra.journal as journal_module

    encoded: list[object] = []
    encode = journal_module.encode_generations
    monkeypatch.setattr(journal_module, "encode_generations", lambda v: encoded.append(v) or encode(v))
    model = counting_model()
    journal, memo = ResponseJournal(tmp_path / "j.sqlite"), SQLiteLLMCache(tmp_path / "memo.sqlite")
    copy = journaled(model.model_copy(update={"cache": memo}), journal)
    assert run_plan(ask(copy, "Why?"), scope=task_scope("rewrite", {"parent_id": "c0"})) == "answer 0"
    assert len(encoded) == 1 and len(journal) == 1 and len(memo) == 1
    memo_value = memo._connection.execute("SELECT value FROM llm_cache").fetchone()[0]
    journal_value = journal._connection.execute("SELECT value FROM responses").fetchone()[0]
    assert memo_value == journal_value
    assert copy.invoke("Why?").content == "answer 0"  # the memo's copy decodes


def test_every_model_of_a_run_is_journalled_and_the_cache_policy_still_chooses_the_memo(
    tmp_path: Path,
) -> None:
    queries = load_training_queries()[:6]
    sizes: dict[str, tuple[int, int]] = {}
    for policy in ("off", "aspects", "all"):
        run_dir = tmp_path / policy
        config = DRPOConfig(depth=1, beam_size=1, n_actions=2, queries_per_step=2, cache=policy, seed=3)
        artifact = optimize(queries, responder="sandbox", judge="sandbox", config=config, run_dir=run_dir)
        calls = sum(usage.calls for usage in artifact.usage.values())
        memo, journal = SQLiteLLMCache(run_dir / CACHE_FILE), ResponseJournal(run_dir / JOURNAL_FILE)
        sizes[policy] = (len(memo), len(journal))
        assert len(journal) == calls  # every role's every call, aspect selection included
    assert sizes["off"][0] == 0
    assert 0 < sizes["aspects"][0] < sizes["aspects"][1]
    assert sizes["all"][0] == sizes["all"][1]


def crash_runner(*args: str, policy: str) -> subprocess.CompletedProcess[str]:
    return run_module("tests.crash_runner", *args, env={"CRASH_CACHE_POLICY": policy})


def artifact_json(run_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((run_dir / "artifact.json").read_text(encoding="utf-8"))
    record.pop("created_at")
    return record


@pytest.fixture(scope="module")
def uninterrupted_default_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    base = tmp_path_factory.mktemp("clean-default")
    result = crash_runner(str(base / "run"), str(base / "log"), "start", policy="aspects")
    assert result.returncode == 0, result.stderr[-3000:]
    return artifact_json(base / "run"), len(lines(base / "log" / "generated.log"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_point", "at"),
    # Right after the 1st / 20th / 45th response was journalled (its task not checkpointed yet),
    # and in the middle of the 9th responder / 30th judge call (not journalled yet).
    [("journal", 1), ("journal", 20), ("journal", 45), ("responder", 9), ("judge", 30)],
)
def test_default_policy_resume_after_a_kill_repeats_no_finished_call(
    tmp_path: Path, uninterrupted_default_policy: tuple[dict[str, Any], int], kill_point: str, at: int
) -> None:
    expected, clean_calls = uninterrupted_default_policy
    run, before, after = tmp_path / "run", tmp_path / "log1", tmp_path / "log2"
    crashed = crash_runner(str(run), str(before), "start", kill_point, str(at), policy="aspects")
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    resumed = crash_runner(str(run), str(after), "resume", policy="aspects")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert artifact_json(run) == expected
    finished = set(lines(before / "finished.log"))
    if kill_point == "journal":
        assert len(finished) == at
    assert [line for line in lines(after / "generated.log") if line.split()[1] in finished] == []
    # Only calls in flight at the kill were made twice (generated, not logged as journalled; one
    # may have been journalled just before the kill and is then replayed instead).
    in_flight = len(lines(before / "generated.log")) - len(finished)
    total = len(lines(before / "generated.log")) + len(lines(after / "generated.log"))
    assert clean_calls <= total <= clean_calls + in_flight


def test_evaluate_with_a_journal_run_again_makes_no_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drpo_agents.evaluation import evaluate
    from drpo_agents.models.sandbox.chat import SandboxChatModel

    made: list[str] = []
    generate = SandboxChatModel._generate

    def counted(self: SandboxChatModel, *args: Any, **kwargs: Any) -> Any:
        made.append(self.role_name)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(SandboxChatModel, "_generate", counted)
    queries = ["How do tides work?", "Plan a picnic for six."]
    options: dict[str, Any] = {
        "responder": "sandbox",
        "judge": "sandbox",
        "prompts": {"terse": "Answer in one line."},
        "reference": "terse",
        "journal": tmp_path / "responses.sqlite",
    }
    first = evaluate(queries, **options)
    calls = len(made)
    again = evaluate(queries, **options)
    assert calls > 0 and len(made) == calls  # every call replayed
    assert again.model_dump(exclude={"created_at"}) == first.model_dump(exclude={"created_at"})


def test_journal_cost_benchmark_smoke_runs() -> None:
    from benchmarks.journal_cost import measure, rows

    cost = measure(20)
    assert cost.calls == 20 and cost.response_chars > 0
    assert len(rows(cost)) == 5


def test_on_an_apps_loop_the_journal_works_in_its_own_thread_and_replays_alike(tmp_path: Path) -> None:
    """On drpo's own loop (the CLI, the blocking API) the journal's SQL runs inline; on another
    loop (an app's, LangGraph Server's) it runs in the journal's thread, never holding that loop
    up, with the call's identity, so the same task run again is replayed all the same."""
    import threading

    journal = ResponseJournal(tmp_path / JOURNAL_FILE)
    threads: list[str] = []
    replay = journal.replay

    def recording_replay(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return replay(*args)

    journal.replay = recording_replay  # type: ignore[method-assign]
    copy = journaled(counting_model(), journal)
    scope = task_scope("evaluate", {"query_id": "q1"})
    first = asyncio.run(arun_plan(two_asks(copy, "Why?"), scope=scope))  # an app's own loop
    again = asyncio.run(arun_plan(two_asks(copy, "Why?"), scope=scope))
    assert first == again == ["answer 0", "answer 1"]
    assert set(threads) == {"drpo-journal_0"}, threads
    threads.clear()
    assert run_sync(arun_plan(two_asks(copy, "Why?"), scope=scope)) == first  # drpo's own loop
    assert set(threads) == {"drpo-event-loop"}, threads  # inline
