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
