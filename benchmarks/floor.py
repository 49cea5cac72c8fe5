"""The frameworks' floor: the CPU one model call costs in a bare LangGraph fan-out, without DRPO.

The same shape as a DRPO level (``Send`` fan-out, two dependent model calls per task, a barrier
node after), with a model that sleeps a simulated latency and answers a fixed text, so what is
measured is LangGraph's task scheduling and LangChain's chat-model path alone. Three variants add
what a durable DRPO run needs, one at a time:

- ``bare``: no cache, no checkpointer;
- ``+ LangChain cache``: a SQLite ``BaseCache`` (each response committed, as the journal does),
  which also makes LangChain serialize every prompt for the cache key;
- ``+ checkpointer``: LangGraph's ``AsyncSqliteSaver`` on a file as well.

``benchmarks.run --profile`` prints these next to DRPO's own CPU per call, so the part of the
overhead that is ours and the part that is the frameworks' are told apart.

    python -m benchmarks.floor
"""

from __future__ import annotations

import asyncio
import operator
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from drpo_agents.infra.cache import SQLiteLLMCache

REPLY = "A fixed answer of a few dozen words, " * 6
SYSTEM = "You are a helpful assistant. Answer precisely, give an example, say what you do not know. " * 4


class FixedReplyModel(BaseChatModel):
    """Sleeps ``latency`` seconds (no CPU), then answers :data:`REPLY` with token usage.

    Not :class:`benchmarks.run.LatencyModel`: that one counts distinct prompts (a ``repr`` of
    every message per call), CPU that would inflate the floor."""

    latency: float = 0.1

    @property
    def _llm_type(self) -> str:
        return "fixed-reply"

    def _result(self) -> ChatResult:
        usage = {"input_tokens": 200, "output_tokens": 40, "total_tokens": 240}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(REPLY, usage_metadata=usage))])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        time.sleep(self.latency)
        return self._result()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(self.latency)
        return self._result()


class FloorState(TypedDict, total=False):
    level: int
    answers: Annotated[list[str], operator.add]


def floor_graph(model: BaseChatModel, levels: int, tasks_per_level: int) -> StateGraph[Any]:
    """``levels`` rounds of ``tasks_per_level`` tasks, each two dependent calls (answer, then judge)."""

    def next_level(state: FloorState) -> FloorState:
        return {"level": state.get("level", -1) + 1}

    def fan_out(state: FloorState) -> list[Send] | str:
        if state["level"] >= levels:
            return END
        return [Send("work", {"level": state["level"], "task": i}) for i in range(tasks_per_level)]

    async def work(task: dict[str, int]) -> FloorState:
        query = f"Level {task['level']}, query {task['task']}: explain something in a paragraph."
        answer = await model.ainvoke([SystemMessage(SYSTEM), HumanMessage(query)])
        verdict = await model.ainvoke([HumanMessage(f"Judge this answer to {query!r}: {answer.content}")])
        return {"answers": [str(verdict.content)[:20]]}

    graph = StateGraph(FloorState)
    graph.add_node("next_level", next_level)
    graph.add_node("work", work)
    graph.add_edge(START, "next_level")
    graph.add_conditional_edges("next_level", fan_out, ["work", END])
    graph.add_edge("work", "next_level")
    return graph


async def floor_cpu_per_call(
    variant: str, *, latency: float = 0.1, levels: int = 5, tasks_per_level: int = 24
) -> tuple[float, float]:
    """CPU seconds per model call of one variant (``bare``, ``cache`` or ``checkpointer``), and
    the run's wall / critical path (``levels`` x 2 calls)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    with tempfile.TemporaryDirectory() as folder:
        cache = SQLiteLLMCache(Path(folder) / "cache.sqlite") if variant != "bare" else None
        model = FixedReplyModel(latency=latency, cache=cache)
        graph = floor_graph(model, levels, tasks_per_level)
        calls = 2 * levels * tasks_per_level
        config: Any = {"configurable": {"thread_id": "floor"}, "max_concurrency": 64, "recursion_limit": 1000}
        started_cpu, started = time.process_time(), time.perf_counter()
        if variant == "checkpointer":
            async with AsyncSqliteSaver.from_conn_string(str(Path(folder) / "checkpoints.sqlite")) as saver:
                await graph.compile(checkpointer=saver).ainvoke({}, config)
        else:
            await graph.compile().ainvoke({}, config)
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
        if cache is not None:
            cache.close()
    return cpu / calls, wall / (2 * levels * latency) if latency else float("inf")


VARIANTS = {"bare": "bare", "cache": "+ LangChain cache", "checkpointer": "+ cache + checkpointer"}


async def floor_rows(latency: float = 0.1) -> list[tuple[tuple[str, str, str, str], float]]:
    """One row per variant (CPU per call and wall / critical path) with its CPU seconds per call;
    the last variant is the durable one."""
    await floor_cpu_per_call("checkpointer", levels=1, latency=0.0)  # imports and first use
    rows = []
    for variant, label in VARIANTS.items():
        cpu, ratio = await floor_cpu_per_call(variant, latency=latency)
        row = (
            f"[floor: LangGraph + LangChain only, {label}] CPU per model call; wall / critical path",
            f"{cpu * 1e6:,.0f} µs; {ratio:.2f}",
            "-",
            "-",
        )
        rows.append((row, cpu))
    return rows


if __name__ == "__main__":
    from benchmarks.table import to_markdown

    print(to_markdown([row for row, _ in asyncio.run(floor_rows())]))
