"""Storage benchmark: a run directory's bytes (checkpoints, artifact, trace) by search depth.

    python -m benchmarks.storage            # depths 5, 10, 20, 40 (minutes)
    python -m benchmarks.storage --smoke    # depths 2, 4

The same sandbox configuration at every depth (beam 2, 3 actions, 4 queries per level, every
training query, no depth extension), run as ``drpo optimize`` runs it: a run directory with the
SQLite checkpointer and the JSON-lines trace. Storage is linear in the work done when the
checkpoint bytes per level stay about constant across depths; the target is checkpoints at
most 3x the artifact at the deepest depth. Reloading the last checkpoint (what ``drpo resume``
does first) is timed too: it replays the growing channels' writes since their last snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drpo_agents import DRPOConfig, aoptimize, create_drpo_graph, load_training_queries
from drpo_agents.infra.checkpoints import open_checkpointer
from drpo_agents.infra.run_files import ARTIFACT_FILE, CHECKPOINT_FILE, TRACE_FILE
from drpo_agents.models.sandbox import sandbox_models
from drpo_agents.tracing import JsonlTracer

FULL_DEPTHS = (5, 10, 20, 40)
SMOKE_DEPTHS = (2, 4)
RATIO_TARGET = 3.0  # checkpoint bytes / artifact bytes at the deepest depth


@dataclass
class StorageMeasure:
    depth: int
    levels: int
    checkpoint_bytes: int
    artifact_bytes: int
    trace_bytes: int
    reload_seconds: float  # reading the run's last state back from its checkpoints
    # The process's peak so far; depths run in increasing order, so it is this run's peak
    # whenever memory grows with depth.
    peak_rss_bytes: int

    @property
    def ratio(self) -> float:
        return self.checkpoint_bytes / self.artifact_bytes

    @property
    def bytes_per_level(self) -> float:
        return self.checkpoint_bytes / self.levels


def storage_config(depth: int) -> DRPOConfig:
    return DRPOConfig(depth=depth, max_depth_increase=0, queries_per_step=4, max_concurrency=64)


async def measure_storage(depth: int, run_dir: Path) -> StorageMeasure:
    """One sandbox run of ``depth`` levels in ``run_dir``, and the sizes of the files it left."""
    config = storage_config(depth)
    models = sandbox_models(config.seed)
    artifact = await aoptimize(
        load_training_queries(),
        config=config,
        run_dir=run_dir,
        run_id="storage",
        callbacks=[JsonlTracer(run_dir / TRACE_FILE)],
        **models,
    )
    graph = create_drpo_graph(models["responder"], models["judge"], models["rewriter"], config=config)
    async with open_checkpointer(None, run_dir) as saver:
        app = graph.compile(checkpointer=saver)
        reload_seconds = float("inf")
        for _ in range(3):  # the fastest of three: the machine's noise only ever adds time
            started = time.perf_counter()
            await app.aget_state({"configurable": {"thread_id": "storage"}})
            reload_seconds = min(reload_seconds, time.perf_counter() - started)
    return StorageMeasure(
        depth=depth,
        levels=len(artifact.levels),
        checkpoint_bytes=_file_bytes(run_dir / CHECKPOINT_FILE),
        artifact_bytes=_file_bytes(run_dir / ARTIFACT_FILE),
        trace_bytes=_file_bytes(run_dir / TRACE_FILE),
        reload_seconds=reload_seconds,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: kB
    )


def _file_bytes(path: Path) -> int:
    """A file's bytes with its SQLite write-ahead log, if any."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def measure_depths(depths: Sequence[int]) -> list[StorageMeasure]:
    measures = []
    for depth in depths:
        with tempfile.TemporaryDirectory() as folder:
            measures.append(await measure_storage(depth, Path(folder)))
    return measures


def storage_rows(measures: Sequence[StorageMeasure]) -> list[tuple[str, str, str, str]]:
    """(benchmark, measured, target, verdict) rows, as benchmarks.run prints them."""
    rows: list[tuple[str, str, str, str]] = []
    per_level = [m.bytes_per_level for m in measures]
    # Linear: bytes per level roughly constant (the deepest run within 1.5x of the shallowest).
    linear = max(per_level) <= 1.5 * min(per_level)
    for m in measures:
        deepest = m is measures[-1]
        rows.append(
            (
                f"storage at depth {m.depth}: checkpoints / artifact / trace",
                f"{_mb(m.checkpoint_bytes)} / {_mb(m.artifact_bytes)} / {_mb(m.trace_bytes)}"
                f" (ratio {m.ratio:.1f}x; {m.bytes_per_level / 1e3:.0f} kB per level;"
                f" reload {m.reload_seconds * 1000:.0f} ms; peak RSS {_mb(m.peak_rss_bytes)})",
                f"ratio <= {RATIO_TARGET:.0f}x at the deepest; kB per level constant",
                ("met" if m.ratio <= RATIO_TARGET and linear else "NOT met") if deepest else "-",
            )
        )
    return rows


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


if __name__ == "__main__":
    from benchmarks.table import to_markdown

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="depths 2 and 4")
    parser.add_argument("--depths", type=int, nargs="+", help="the depths to run (default: 5 10 20 40)")
    args = parser.parse_args()
    depths = args.depths or (SMOKE_DEPTHS if args.smoke else FULL_DEPTHS)
    print(to_markdown(storage_rows(asyncio.run(measure_depths(depths)))))
