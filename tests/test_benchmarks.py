"""The benchmark suite runs (tiny sizes) so it cannot rot; its numbers are not asserted against times."""

from __future__ import annotations

import pytest

from benchmarks.run import main, to_markdown


@pytest.mark.slow
async def test_benchmark_smoke_run_produces_every_row() -> None:
    rows = await main(smoke=True)
    names = [row[0] for row in rows]
    assert any(n.startswith("wall / critical path") for n in names)
    assert any(n.startswith("sequential / concurrent") for n in names)
    assert any(n.startswith("framework overhead") for n in names)
    assert any(n.startswith("critique recall") for n in names)
    assert [n for n in names if n.startswith("storage at depth")] == [
        "storage at depth 2: checkpoints / artifact / trace",
        "storage at depth 4: checkpoints / artifact / trace",
    ]
    calls = next(row for row in rows if row[0] == "calls / tokens per run")[1]
    assert int(calls.split(" / ")[0]) > 0
    assert to_markdown(rows).count("\n") == len(rows) + 1


@pytest.mark.slow
async def test_profile_rows_split_the_cpu_and_compare_with_the_frameworks_floor() -> None:
    from benchmarks.run import profile_rows

    rows = await profile_rows(latency=0.001, depth=1)
    names = [row[0] for row in rows]
    assert sum(n.startswith("[floor: LangGraph + LangChain only") for n in names) == 3
    ratios = [row[1] for row in rows if "/ durable floor" in row[0]]
    assert len(ratios) == 2 and all(r.endswith("x") for r in ratios)
    assert any("CPU per model call: checkpointer" in n for n in names)


async def test_floor_graph_makes_two_dependent_calls_per_task() -> None:
    from benchmarks.floor import FixedReplyModel, floor_graph

    calls: list[int] = []

    class Counting(FixedReplyModel):
        async def _agenerate(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            calls.append(1)
            return await super()._agenerate(*args, **kwargs)  # type: ignore[arg-type]

    graph = floor_graph(Counting(latency=0.0), levels=2, tasks_per_level=3).compile()
    result = await graph.ainvoke({}, {"recursion_limit": 100})
    assert len(calls) == 2 * 2 * 3 and len(result["answers"]) == 2 * 3
