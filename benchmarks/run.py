"""drpo-agents benchmarks: ratios that hold on a noisy machine, printed as a Markdown table.

    python -m benchmarks.run            # full sizes (a few minutes)
    python -m benchmarks.run --smoke    # tiny sizes, seconds (CI runs this so the code cannot rot)
    python -m benchmarks.run --profile  # only 6: CPU per model call by component (about a minute)

Models are the sandbox roles behind :class:`LatencyModel`, which sleeps a fixed simulated
latency per call and counts calls and tokens; the sandbox models then compute their answers on the
event loop (their CPU is printed beside the overhead it is part of). Every number is a ratio against a
baseline measured in the same process, never an absolute time compared with a constant.

1. wall time / critical path (sum over levels of the slowest dependent chain of calls)
2. sequential (one call at a time, as the reference implementation) / concurrent wall time
3. framework overhead (graph, checkpoints, Chroma, parsing) as a share of wall time, with a run
   directory, at 100 ms and at 1 s per call, and where it goes: before the first call, between
   waves of calls, within them (answers arriving together, processed one by one), after the last
4. critique-memory recall latency p50/p95 at several store sizes (exact recall over an in-process
   mirror of the Chroma collection) and the mirror's load time in a fresh process
5. calls and tokens per run, and cache hits when an identical run is repeated
6. storage by depth: checkpoint, artifact and trace bytes (benchmarks/storage.py)
7. (``--profile``) CPU per model call by component (graph scheduling, checkpointer, journal and
   memo cache, Chroma, structured output, callbacks and tracing, our nodes), with a run
   directory, without and with the JSON-lines trace; see :mod:`benchmarks.profile_calls`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from benchmarks.floor import floor_rows
from benchmarks.profile_calls import SANDBOX_COMPONENT, cpu_timed, profiled
from benchmarks.storage import FULL_DEPTHS, SMOKE_DEPTHS, measure_depths, storage_rows
from benchmarks.table import to_markdown
from drpo_agents import DRPOConfig, aoptimize, load_training_queries
from drpo_agents.infra.run_files import TRACE_FILE
from drpo_agents.memory import ChromaCritiqueMemory, Critique, chroma_client
from drpo_agents.models.sandbox import sandbox_models
from drpo_agents.tracing import JsonlTracer


@dataclass
class CallCounter:
    """Shared by a model and its copies (pydantic would copy a plain dict field)."""

    calls: int = 0
    tokens: int = 0
    distinct: set[str] = field(default_factory=set)  # identical calls share one cached response
    # CPU seconds the simulated models (and this counting) spent answering, on the event loop
    # after their sleep. A provider spends its model's time on its side, inside the latency;
    # here it lands on the critical path as a wave's answers are produced one after another.
    model_seconds: float = 0.0
    spans: list[tuple[float, float]] = field(default_factory=list)  # each call's perf_counter start, end


class LatencyModel(BaseChatModel):
    """Wraps a model: every async call first sleeps ``latency`` seconds; calls are counted."""

    inner: BaseChatModel
    latency: float = 0.1
    counter: CallCounter

    @property
    def _llm_type(self) -> str:
        return f"latency({self.inner._llm_type})"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"inner": self.inner._identifying_params, "latency": self.latency}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.model_copy(update={"inner": self.inner.bind_tools(tools, **kwargs)})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        time.sleep(self.latency)
        return self._answer(messages, stop, started, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        await asyncio.sleep(self.latency)
        return self._answer(messages, stop, started, **kwargs)

    def _answer(
        self, messages: list[BaseMessage], stop: list[str] | None, started: float, **kwargs: Any
    ) -> ChatResult:
        cpu = time.thread_time()
        result = self._count(messages, self.inner._generate(messages, stop, **kwargs))  # type: ignore[attr-defined]
        self.counter.model_seconds += time.thread_time() - cpu
        self.counter.spans.append((started, time.perf_counter()))
        return result

    def _count(self, messages: list[BaseMessage], result: ChatResult) -> ChatResult:
        usage = result.generations[0].message.usage_metadata or {}  # type: ignore[attr-defined]
        self.counter.calls += 1
        self.counter.tokens += usage.get("total_tokens", 0)
        self.counter.distinct.add(repr((self._identifying_params, [(m.type, m.content) for m in messages])))
        return result


def latency_models(latency: float, counter: CallCounter, seed: int = 0) -> dict[str, BaseChatModel]:
    return {
        role: LatencyModel(inner=model, latency=latency, counter=counter)
        for role, model in sandbox_models(seed).items()
    }


@dataclass
class RunMeasure:
    wall: float
    critical_path: float
    levels: int
    calls: int
    tokens: int
    distinct_calls: int
    model_seconds: float
    split: OverheadSplit

    @property
    def overhead_share(self) -> float:
        """The share of the wall time beyond the critical path."""
        return max(0.0, self.wall - self.critical_path) / self.wall

    def overhead_text(self) -> str:
        """The overhead share, and the part of it that is the simulated models' own CPU (which a
        real provider spends on its side, inside the latency)."""
        models = min(self.overhead_share, self.model_seconds / self.wall)
        return f"{self.overhead_share:.1%} (simulated models' CPU: {models:.1%})"


@dataclass
class OverheadSplit:
    """Where the wall time beyond the waves' latency goes. Calls sent together (one superstep's
    fan-out) form a wave; its answers arrive together and are processed one after another."""

    waves: int
    before_first_call: float  # setup: run directory, memory, graph, the first tasks
    between_waves: float  # a wave's last answer processed -> the next wave's first call sent
    within_waves: float  # a wave's first call sent -> its last answer processed, less the latency
    after_last_call: float  # the last answer processed -> the artifact written

    def text(self) -> str:
        return (
            f"{self.waves} waves: before the first call {self.before_first_call:.2f} s; between waves "
            f"{self.between_waves:.2f} s; within waves {self.within_waves:.2f} s; "
            f"after the last call {self.after_last_call:.2f} s"
        )


def overhead_split(
    spans: list[tuple[float, float]], started: float, ended: float, latency: float
) -> OverheadSplit:
    """Group calls into waves and split the time the run spent beyond ``waves x latency``.

    A call joins the current wave if it starts within one latency of the wave's first call: a
    call that depends on another starts after that one's answer, so never that early."""
    waves: list[tuple[float, float]] = []  # (first start, last end)
    for start, end in sorted(spans):
        if waves and start - waves[-1][0] < latency:
            waves[-1] = (waves[-1][0], max(waves[-1][1], end))
        else:
            waves.append((start, end))
    if not waves:
        return OverheadSplit(0, ended - started, 0.0, 0.0, 0.0)
    between = sum(max(0.0, nxt[0] - prev[1]) for prev, nxt in itertools.pairwise(waves))
    within = sum(end - start - latency for start, end in waves)
    return OverheadSplit(len(waves), waves[0][0] - started, between, within, ended - waves[-1][1])


async def measure_run(
    config: DRPOConfig,
    latency: float,
    *,
    run_dir: Path | None = None,
    queries: int = 60,
    callbacks: list[Any] | None = None,
) -> RunMeasure:
    counter = CallCounter()
    models = latency_models(latency, counter, config.seed)
    started = time.perf_counter()
    artifact = await aoptimize(
        load_training_queries()[:queries],
        config=config,
        run_dir=run_dir,
        run_id="bench",
        callbacks=callbacks,
        **models,
    )
    wall = time.perf_counter() - started
    # Every level's slowest chain: (rewrite | aspect selection) -> respond -> score = 3 calls.
    # Level 0 has no rewrite but still selects aspects for its new queries: also 3 calls.
    critical = 3 * latency * len(artifact.levels)
    return RunMeasure(
        wall,
        critical,
        len(artifact.levels),
        counter.calls,
        counter.tokens,
        len(counter.distinct),
        counter.model_seconds,
        overhead_split(counter.spans, started, started + wall, latency),
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def recall_latency(size: int, probes: int) -> tuple[float, float, float]:
    """p50/p95 seconds of one (exact) critique recall with ``size`` stored critiques, and the
    seconds a fresh process's memory takes to load its in-process mirror (the first recall)."""
    queries = [q["query"] for q in load_training_queries()]
    aspects = ["Safety", "Clarity", "Depth", "Empathy", "Factuality"]
    with tempfile.TemporaryDirectory() as folder:
        memory = ChromaCritiqueMemory(client=chroma_client(folder))
        batch: list[Critique] = []
        for index in range(size):
            batch.append(
                Critique(
                    query=queries[index % len(queries)],
                    aspect=aspects[index % len(aspects)],
                    score=1 + index % 5,
                    rationale=f"Rationale variant {index}: the answer misses point {index % 97}.",
                    run_id=f"run{index % 7}",
                    responder_model="bench-model",
                    candidate_id=f"c{index}",
                    level=index % 20,
                    query_id=f"q{index % len(queries)}",
                )
            )
            if len(batch) == 2000:
                memory.remember(batch)
                batch = []
        memory.remember(batch)
        reopened = ChromaCritiqueMemory(client=chroma_client(folder))  # as a resumed run would
        started = time.perf_counter()
        reopened.recall(queries[0], k=5, responder_model="bench-model")
        load = time.perf_counter() - started
        timings = []
        for index in range(probes):
            started = time.perf_counter()
            reopened.recall(queries[(index * 7) % len(queries)], k=5, responder_model="bench-model")
            timings.append(time.perf_counter() - started)
    return percentile(timings, 0.5), percentile(timings, 0.95), load


async def main(smoke: bool = False) -> list[tuple[str, str, str, str]]:
    """Run every benchmark; returns (benchmark, measured, target, verdict) rows."""
    latency = 0.02 if smoke else 0.1
    depth = 2 if smoke else 4
    rows: list[tuple[str, str, str, str]] = []

    # 1 + 2: concurrent vs. its critical path, and vs. one call at a time (beam 2, 3 actions, minibatch 4).
    concurrent_cfg = DRPOConfig(depth=depth, max_depth_increase=0, queries_per_step=4, max_concurrency=64)
    concurrent = await measure_run(concurrent_cfg, latency)
    ratio_cp = concurrent.wall / concurrent.critical_path
    rows.append(
        ("wall / critical path (concurrency 64)", f"{ratio_cp:.2f}", "<= 1.3", _verdict(ratio_cp <= 1.3))
    )
    sequential = await measure_run(concurrent_cfg.model_copy(update={"max_concurrency": 1}), latency)
    speedup = sequential.wall / concurrent.wall
    rows.append(("sequential / concurrent wall time", f"{speedup:.1f}x", ">= 5x", _verdict(speedup >= 5)))

    # 3: framework overhead with checkpoints + Chroma + cache in a run directory, at a fast
    # provider's latency and at a typical one.
    for call_latency, target in ((latency, 0.10), (10 * latency, 0.02)):
        with tempfile.TemporaryDirectory() as folder:
            durable = await measure_run(concurrent_cfg, call_latency, run_dir=Path(folder))
        rows.append(
            (
                f"framework overhead share at {int(call_latency * 1000)} ms latency (run dir); "
                "wall / critical path",
                f"{durable.overhead_text()}; {durable.wall / durable.critical_path:.2f}",
                f"<= {target:.0%}",
                _verdict(durable.overhead_share <= target),
            )
        )
        rows.append(
            (
                f"where the overhead goes at {int(call_latency * 1000)} ms latency",
                durable.split.text(),
                "-",
                "-",
            )
        )

    # 6 (run before 4, whose 100,000-critique store would set the process's peak RSS): storage
    # grows linearly with depth, and the peak RSS of each depth's run.
    storage = storage_rows(await measure_depths(SMOKE_DEPTHS if smoke else FULL_DEPTHS))

    # 4: recall latency by store size.
    rows += recall_rows([1000] if smoke else [1000, 10_000, 100_000], probes=20 if smoke else 100)

    # 5: calls, tokens, and cache hits when the same run is repeated with the cache on.
    with tempfile.TemporaryDirectory() as folder:
        cached_cfg = concurrent_cfg.model_copy(update={"cache": "all"})
        first = await measure_run(cached_cfg, 0.0, run_dir=Path(folder) / "a")
        # The same run again in a new directory but sharing the cache file: every call is a hit.
        from drpo_agents.infra.cache import SQLiteLLMCache

        cache = SQLiteLLMCache(Path(folder) / "a" / "llm_cache.sqlite")
        stored = len(cache)
        cache.close()
    rows.append(("calls / tokens per run", f"{first.calls} / {first.tokens:,}", "-", "-"))
    rows.append(
        (
            "responses cached for resume",
            f"{stored} of {first.distinct_calls} distinct calls ({first.calls} in all)",
            "all",
            _verdict(stored >= first.distinct_calls),
        )
    )

    return rows + storage


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def recall_rows(sizes: Sequence[int], probes: int) -> list[tuple[str, str, str, str]]:
    """Benchmark 4's rows: exact recall p50 / p95 and the mirror's load time, by store size."""
    rows = []
    for size in sizes:
        p50, p95, load = recall_latency(size, probes)
        rows.append(
            (
                f"critique recall (exact) p50 / p95 at {size:,} critiques; mirror load",
                f"{p50 * 1000:.1f} / {p95 * 1000:.1f} ms; {load:.2f} s",
                "p50 < 10 ms at 100k",
                _verdict(p50 < 0.010) if size == 100_000 else "-",
            )
        )
    return rows


async def profile_rows(latency: float = 0.1, depth: int = 4) -> list[tuple[str, str, str, str]]:
    """Benchmark 6: CPU per model call by component, with a run directory (checkpoints, cache,
    journal, Chroma memory) as in benchmark 3, and with the CLI's JSON-lines trace added.

    One unprofiled run gives the overhead share, wall / critical path and the CPU per call; a
    second, identical run under cProfile splits the main thread's CPU between the components."""
    config = DRPOConfig(depth=depth, max_depth_increase=0, queries_per_step=4, max_concurrency=64)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as folder:  # imports and first-use setup stay out of the numbers
        await measure_run(config.model_copy(update={"depth": 1}), 0.0, run_dir=Path(folder))
    framework: dict[str, float] = {}
    for label, traced in (("run dir", False), ("run dir + trace", True)):

        def run(folder: str, traced: bool = traced) -> Awaitable[RunMeasure]:
            tracer = [JsonlTracer(Path(folder) / TRACE_FILE)] if traced else None
            return measure_run(config, latency, run_dir=Path(folder), callbacks=tracer)

        with tempfile.TemporaryDirectory() as folder:
            measured, main_cpu, other_cpu = await cpu_timed(lambda: run(folder))
        with tempfile.TemporaryDirectory() as folder:
            _, shares = await profiled(lambda: run(folder))
        calls = max(1, measured.calls)
        rows.append(
            (
                f"[{label}] overhead share at {int(latency * 1000)} ms; wall / critical path",
                f"{measured.overhead_text()}; {measured.wall / measured.critical_path:.2f}",
                "<= 10%; <= 1.3",
                "-",
            )
        )
        for name, share in sorted(shares.items(), key=lambda item: -item[1]):
            rows.append(
                (
                    f"[{label}] CPU per model call: {name}",
                    f"{share * main_cpu / calls * 1e6:,.0f} µs",
                    "-",
                    "-",
                )
            )
        rows.append(
            (
                f"[{label}] CPU per model call: other threads (aiosqlite SQL, Chroma Rust pool, sync nodes)",
                f"{other_cpu / calls * 1e6:,.0f} µs",
                "-",
                "-",
            )
        )
        rows.append(
            (
                f"[{label}] CPU per model call: total ({measured.calls} calls)",
                f"{(main_cpu + other_cpu) / calls * 1e6:,.0f} µs",
                "-",
                "-",
            )
        )
        framework[label] = (main_cpu * (1 - shares.get(SANDBOX_COMPONENT, 0.0)) + other_cpu) / calls
    # The same shape of work in LangGraph + LangChain alone: what no code of ours can go below.
    floor = await floor_rows(latency)
    rows += [row for row, _ in floor]
    durable_floor = floor[-1][1]
    for label, seconds in framework.items():
        rows.append(
            (
                f"[{label}] framework CPU per model call (total less the sandbox models) / durable floor",
                f"{seconds * 1e6:,.0f} µs / {durable_floor * 1e6:,.0f} µs = {seconds / durable_floor:.1f}x",
                "-",
                "-",
            )
        )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument(
        "--profile", action="store_true", help="only benchmark 6: CPU per model call by component"
    )
    parser.add_argument("--recall", type=int, metavar="SIZE", help="only benchmark 4, at SIZE critiques")
    args = parser.parse_args()
    if args.profile:
        print(to_markdown(asyncio.run(profile_rows())))
    elif args.recall:
        print(to_markdown(recall_rows([args.recall], probes=100)))
    else:
        print(to_markdown(asyncio.run(main(smoke=args.smoke))))
