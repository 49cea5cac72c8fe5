"""What the response journal costs per model call, printed as a Markdown table.

    python -m benchmarks.journal_cost            # 2,000 calls per measure (about a minute)
    python -m benchmarks.journal_cost --smoke    # 100 calls, seconds (CI runs this so the code cannot rot)

Each measure runs the same sandbox judge calls (real LangChain ``invoke``: llm string, prompt
serialisation, cache lookup and store) in one process, in three interleaved rounds (the best
round of each counts):

1. no journal (the model has no cache): the baseline;
2. journal, every call fresh (a new task scope per call): a miss lookup, the call, a commit;
3. journal, every call replayed (the same scopes again): a hit, no call.

Reported: microseconds per stored response and per replayed lookup (the journal's own methods,
timed directly), and the extra time per fresh call over the baseline, as microseconds and as a
share of a provider call of 100 ms and 1 s (what a real model takes). The sandbox call itself
takes well under a millisecond, so its ratio shows the journal's cost at its most visible.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration

from benchmarks.table import to_markdown
from drpo_agents import load_training_queries
from drpo_agents.infra.call_identity import CallIdentity, calling, task_scope
from drpo_agents.infra.journal import ResponseJournal, journaled_copies
from drpo_agents.models.sandbox import sandbox_models


@dataclass
class JournalCost:
    calls: int
    response_chars: int  # the stored response's text size
    bare_us: float  # per call, no journal
    fresh_us: float  # per call, journal, every call made and stored
    replay_us: float  # per call, journal, every call replayed
    store_us: float  # ResponseJournal.record alone
    lookup_us: float  # ResponseJournal.replay alone (a hit)


ROUNDS = 3


def _per_call(indices: range, run: Callable[[int], Any]) -> float:
    """Microseconds per ``run(index)`` over ``indices``."""
    started = time.perf_counter()
    for index in indices:
        run(index)
    return (time.perf_counter() - started) / len(indices) * 1e6


def measure(calls: int) -> JournalCost:
    """Time ``calls`` sandbox judge calls without a journal, fresh through one, and replayed."""
    judge = sandbox_models(0)["judge"]
    queries = [q["query"] for q in load_training_queries()]

    def messages(index: int) -> list[Any]:
        query = queries[index % len(queries)]
        return [
            SystemMessage("Score the answer."),
            HumanMessage(f"{query}\n\nAnswer #{index}: {query[::-1]}"),
        ]

    def scope(index: int) -> CallIdentity:
        return CallIdentity(task_scope("evaluate", {"query_id": index}), "1")

    with tempfile.TemporaryDirectory() as folder:
        journal = ResponseJournal(Path(folder) / "responses.sqlite")
        (journaled,) = journaled_copies([judge], journal)

        def through_journal(index: int) -> Any:
            with calling(scope(index)):
                return journaled.invoke(messages(index))

        # Interleaved rounds, best of each: a shared machine's noise only ever adds time.
        bare = fresh = replay = float("inf")
        for round_ in range(ROUNDS):
            indices = range(round_ * calls, (round_ + 1) * calls)  # new scopes: fresh calls are fresh
            bare = min(bare, _per_call(indices, lambda i: judge.invoke(messages(i))))
            fresh = min(fresh, _per_call(indices, through_journal))
            replay = min(replay, _per_call(indices, through_journal))
        assert journal.stored == journal.replayed == ROUNDS * calls

        # The journal's own methods, on a real judge response (outside a scope: not journalled).
        response = [ChatGeneration(message=judge.invoke(messages(0)))]
        keys = [(scope(i), f"prompt {i}", "llm") for i in range(calls)]
        store = min(
            _per_call(range(calls), lambda i: journal.record(*keys[i], response)) for _ in range(ROUNDS)
        )
        lookup = min(_per_call(range(calls), lambda i: journal.replay(*keys[i])) for _ in range(ROUNDS))
        journal.close()
    return JournalCost(calls, len(response[0].text), bare, fresh, replay, store, lookup)


def rows(cost: JournalCost) -> list[tuple[str, str, str, str]]:
    extra = cost.fresh_us - cost.bare_us
    return [
        (
            f"journal: store one response (commit, {cost.response_chars:.0f} chars)",
            f"{cost.store_us:.0f} µs",
            "-",
            "-",
        ),
        ("journal: replay one response (lookup + decode)", f"{cost.lookup_us:.0f} µs", "-", "-"),
        (
            f"sandbox call: no journal / fresh / replayed ({cost.calls} calls)",
            f"{cost.bare_us:.0f} / {cost.fresh_us:.0f} / {cost.replay_us:.0f} µs",
            "-",
            "-",
        ),
        ("extra per fresh call / sandbox call", f"{extra:.0f} µs ({extra / cost.bare_us:.0%})", "-", "-"),
        (
            "journal overhead share of a 100 ms / 1 s provider call",
            f"{extra / (extra + 1e5):.3%} / {extra / (extra + 1e6):.4%}",
            "-",
            "-",
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="100 calls, for CI")
    print(to_markdown(rows(measure(100 if parser.parse_args().smoke else 2000))))
