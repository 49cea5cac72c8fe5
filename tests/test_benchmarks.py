"""The benchmark suite runs (tiny sizes) so it cannot rot; its numbers are not asserted against times."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks.run import main
from benchmarks.table import to_markdown


@pytest.mark.slow
async def test_benchmark_smoke_run_produces_every_row() -> None:
    rows = await main(smoke=True)
    names = [row[0] for row in rows]
    assert any(n.startswith("wall / critical path") for n in names)
    assert any(n.startswith("sequential / concurrent") for n in names)
    assert any(n.startswith("framework overhead") for n in names)
    # The smoke run's depth 2 is 3 levels of 3 dependent calls: at least 9 waves (a dependent call
    # never joins its predecessor's wave; a superstep whose calls are sent more than one latency
    # apart on a loaded machine counts as two).
    waves = [row[1].split(" waves:")[0] for row in rows if row[0].startswith("where the overhead goes")]
    assert len(waves) == 2 and all(int(count) >= 9 for count in waves), waves
    assert any(n.startswith("critique recall") for n in names)
    assert [n for n in names if n.startswith("storage at depth")] == [
        "storage at depth 2: checkpoints / artifact / trace",
        "storage at depth 4: checkpoints / artifact / trace",
    ]
    calls = next(row for row in rows if row[0] == "calls / tokens per run")[1]
    assert int(calls.split(" / ")[0]) > 0
    assert to_markdown(rows).count("\n") == len(rows) + 1


def test_overhead_split_groups_calls_sent_together_into_waves() -> None:
    from benchmarks.run import overhead_split

    # Two waves of 1 s calls: sent at 0.5 s (answers processed until 1.6 s) and at 1.7 s.
    spans = [(0.5, 1.52), (0.51, 1.6), (1.7, 2.7), (1.72, 2.75)]
    split = overhead_split(spans, started=0.0, ended=3.0, latency=1.0)
    assert split.waves == 2
    assert split.before_first_call == pytest.approx(0.5)
    assert split.between_waves == pytest.approx(0.1)
    assert split.within_waves == pytest.approx(0.1 + 0.05)
    assert split.after_last_call == pytest.approx(0.25)
    total = split.before_first_call + split.between_waves + split.within_waves + split.after_last_call
    assert total == pytest.approx(3.0 - 2 * 1.0)


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


def test_real_model_summary_groups_seeds_per_responder_and_configuration(tmp_path: Path) -> None:
    from benchmarks.real_model import Row, load_rows, summary_markdown

    def row(variant: str, seed: int, drpo: float, win: float) -> dict[str, object]:
        return asdict(
            Row(variant, seed, 3.0, 2.9, drpo, (drpo - 0.2, drpo + 0.2), win, win, 2.5, 3.0, 5, 84, 1.0)
        )

    first = tmp_path / "a.json"
    first.write_text(
        json.dumps({"responder": "local:x", "rows": [row("gate", 0, 3.2, 0.7), row("gate", 1, 2.0, 0.1)]})
    )
    later = tmp_path / "b.json"  # re-measures seed 1 and adds a sandbox prediction
    later.write_text(
        json.dumps(
            {
                "responder": "local:x",
                "rows": [row("gate", 1, 3.4, 0.6)],
                "sandbox_x": [row("gate", 0, 4.0, 1.0)],
            }
        )
    )
    table = summary_markdown(load_rows([first, later]))
    assert "| local:x | gate | 0, 1 | 3.20 / 3.40 | 3.30 | 3.00 | 2.90 | +0.30 | 0.65 | 0.65 | 2/2 |" in table
    assert "| sandbox_x | gate | 0 | 4.00 |" in table
