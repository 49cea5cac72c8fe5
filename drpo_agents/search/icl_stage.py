"""DRPO's first stage: optimise the answers of the in-context (ICL) examples.

For each seed example (query, answer) the judge selects the aspects that matter for the query
and scores the answer on them; the rewriter rewrites the *answer* from that critique; the judge
scores the rewrite; up to ``num_iters`` rounds, stopping early once every aspect scores 5.

A rewrite replaces the best answer only when it scores strictly higher, and a failed call keeps
the best answer so far: see :mod:`drpo_agents.search.icl_example`, the per-example plan.

The stage is a LangGraph ``StateGraph`` (:func:`create_icl_stage_graph`): one ``Send`` task per
example, so examples run in parallel and a checkpointed run resumes only unfinished examples.
:func:`optimize_icl_examples` / :func:`aoptimize_icl_examples` run it in one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Required, cast

from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from drpo_agents.agents import AnswerRewriter, Judge
from drpo_agents.artifact import ICLOptimizationRecord
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import DEFAULT_ROLE_MAX_TOKENS, DRPOConfig, Role, StructuredOutputMethod
from drpo_agents.errors import ConfigError
from drpo_agents.icl_sets import icl_example
from drpo_agents.infra.calls import CallPlan, plan_node
from drpo_agents.models.roles import prepare_role_models
from drpo_agents.schemas import ICLExample
from drpo_agents.search.icl_example import ICLExampleRecord, PreparedExample, plan_optimize_example
from drpo_agents.search.records import ICLShot, shot_of
from drpo_agents.search.state import merge_records
from drpo_agents.structured import StructuredMethods
from drpo_agents.usage import UsageByRole, merge_usage


class ICLStageConfig(BaseModel):
    """Knobs of the ICL optimisation stage (validated, frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_iters: int = Field(5, ge=0, le=50, description="Most rewrite rounds per example.")
    structured_output_method: StructuredOutputMethod = "auto"
    role_structured_output: dict[Role, StructuredOutputMethod] = Field(
        default_factory=dict, description="Per-role override of structured_output_method."
    )
    role_max_tokens: dict[Role, int] = Field(
        default_factory=lambda: dict(DEFAULT_ROLE_MAX_TOKENS),
        description="Reply cap per role in tokens, for models without their own.",
    )
    max_parse_retries: int = Field(2, ge=0, le=10, description="Re-asks after an invalid structured reply.")
    max_concurrency: int = Field(8, ge=1, le=1024, description="Most model calls in flight at once.")
    prompts_dir: Path | None = Field(None, description="Folder of prompt templates overriding ours by name.")

    @classmethod
    def from_drpo_config(cls, config: DRPOConfig, *, num_iters: int = 5) -> ICLStageConfig:
        """The stage's settings taken from a search config (same parsing, concurrency, templates)."""
        return cls(
            num_iters=num_iters,
            structured_output_method=config.structured_output_method,
            role_structured_output=config.role_structured_output,
            role_max_tokens=config.role_max_tokens,
            max_parse_retries=config.max_parse_retries,
            max_concurrency=config.max_concurrency,
            prompts_dir=config.prompts_dir,
        )


class ICLExampleTask(TypedDict):
    """The ``Send`` payload of one ``icl_optimize_example`` task."""

    example: PreparedExample


class ICLStageInput(TypedDict):
    """The seed examples: :class:`ICLExample` objects or ``{"query", "answer", "id"?, "history"?}`` dicts."""

    icl_examples: Required[list[Any]]


class ICLStageUpdate(TypedDict, total=False):
    """What a node of the stage returns: some of the state's fields."""

    icl_prepared: list[PreparedExample]
    icl_results: Annotated[dict[str, ICLExampleRecord], merge_records]
    optimized_icl_examples: list[ICLShot]
    icl_records: list[ICLExampleRecord]
    usage: Annotated[UsageByRole, merge_usage]


class ICLStageState(ICLStageInput, ICLStageUpdate, total=False):
    """Plain JSON state: the validated examples, one result record per example id, usage."""


class ICLStageOutput(TypedDict, total=False):
    """The optimized examples (input order) and one :class:`ICLOptimizationRecord` dict per example."""

    optimized_icl_examples: list[ICLShot]
    icl_records: list[ICLExampleRecord]
    usage: UsageByRole


class _ICLStage:
    """The agents plus the config; its methods are the subgraph's nodes and router."""

    def __init__(self, judge: Judge, rewriter: AnswerRewriter, config: ICLStageConfig) -> None:
        self.judge = judge
        self.rewriter = rewriter
        self.config = config

    def prepare(self, state: ICLStageState) -> ICLStageUpdate:
        """Validate the examples and give each a unique id (``icl01``, ... when missing)."""
        prepared: list[PreparedExample] = []
        for index, raw in enumerate(state.get("icl_examples") or []):
            example = icl_example(raw, f"ICL example #{index + 1}")
            example_id = example.id or f"icl{index + 1:02d}"
            if any(p["id"] == example_id for p in prepared):
                raise ConfigError(f"ICL example id {example_id!r} is used twice")
            prepared.append({"id": example_id, "query": example.query, "answer": example.answer})
            if example.history:
                prepared[-1]["history"] = example.history
        return {"icl_prepared": prepared}

    def route_examples(self, state: ICLStageState) -> list[Send] | str:
        """One ``optimize`` task per example not optimised yet."""
        done = state.get("icl_results") or {}
        sends = [
            Send("icl_optimize_example", ICLExampleTask(example=e))
            for e in state.get("icl_prepared", [])
            if e["id"] not in done
        ]
        return sends or "icl_collect"

    def collect(self, state: ICLStageState) -> ICLStageOutput:
        """The optimized examples and records, in input order."""
        results = state.get("icl_results") or {}
        records = [results[e["id"]] for e in state.get("icl_prepared", [])]
        examples = [
            shot_of(
                ICLExample(
                    id=r["example_id"],
                    query=r["query"],
                    answer=r["final_answer"],
                    history=r.get("history", []),
                )
            )
            for r in records
        ]
        return {"optimized_icl_examples": examples, "icl_records": records}

    def plan_optimize_example(self, task: ICLExampleTask, config: RunnableConfig) -> CallPlan[ICLStageUpdate]:
        """The ``icl_optimize_example`` node: one example's rounds, merged into ``icl_results``."""
        example = task["example"]
        record, usage = yield from plan_optimize_example(
            self.judge, self.rewriter, example, num_iters=self.config.num_iters, config=config
        )
        return {"icl_results": {example["id"]: record}, "usage": usage}


def create_icl_stage_graph(
    judge: str | BaseChatModel,
    rewriter: str | BaseChatModel | None = None,
    *,
    config: ICLStageConfig | None = None,
    aspects: AspectCatalog | None = None,
    methods: StructuredMethods | None = None,
) -> StateGraph[ICLStageState, None, ICLStageInput, ICLStageOutput]:
    """Build the ICL optimisation stage as a ``StateGraph`` (uncompiled: you choose the checkpointer).

    Args:
        judge: the judge model (or ``"provider:model"`` string; ``"sandbox"`` offline).
        rewriter: the model that rewrites answers; defaults to the judge's model.
        config: rounds, parsing and template settings.
        aspects: the judge's aspect catalog; defaults to the built-in aspects.
        methods: the structured-output methods discovered so far (shared with an enclosing
            search); a new memory by default.

    Returns:
        A graph taking ``{"icl_examples": [...]}`` and returning ``optimized_icl_examples``
        (``ICLExample`` dicts, input order), ``icl_records`` (:class:`ICLOptimizationRecord`
        dicts) and ``usage``. Node names start with ``icl_`` so the graph can be embedded in a
        larger pipeline. Pass ``{"max_concurrency": N}`` in the run config to bound parallel calls.
    """
    cfg = config or ICLStageConfig()
    models = prepare_role_models(judge=judge, rewriter=rewriter, max_tokens=cfg.role_max_tokens)
    assert models.rewriter is not None  # prepared with a rewriter
    methods = methods if methods is not None else StructuredMethods()
    stage = _ICLStage(
        Judge(
            models.judge,
            catalog=aspects,
            method=cfg.role_structured_output.get("judge", cfg.structured_output_method),
            max_retries=cfg.max_parse_retries,
            prompts_dir=cfg.prompts_dir,
            methods=methods,
        ),
        AnswerRewriter(
            models.rewriter,
            method=cfg.role_structured_output.get("rewriter", cfg.structured_output_method),
            max_retries=cfg.max_parse_retries,
            prompts_dir=cfg.prompts_dir,
            methods=methods,
        ),
        cfg,
    )
    graph = StateGraph(ICLStageState, input_schema=ICLStageInput, output_schema=ICLStageOutput)
    graph.add_node("icl_prepare", stage.prepare)
    graph.add_node("icl_optimize_example", plan_node("icl_optimize_example", stage.plan_optimize_example))
    graph.add_node("icl_collect", stage.collect)
    graph.add_edge(START, "icl_prepare")
    graph.add_conditional_edges("icl_prepare", stage.route_examples, ["icl_optimize_example", "icl_collect"])
    graph.add_edge("icl_optimize_example", "icl_collect")
    graph.add_edge("icl_collect", END)
    return graph


# The name of a standalone stage run in traces.
_RUN_NAME = "drpo_icl_stage"


def _run_config(cfg: ICLStageConfig, callbacks: Callbacks) -> RunnableConfig:
    return cast(
        RunnableConfig,
        {"max_concurrency": cfg.max_concurrency, "callbacks": callbacks, "run_name": _RUN_NAME},
    )


def _results(out: ICLStageOutput) -> tuple[list[ICLExample], list[ICLOptimizationRecord]]:
    return (
        [ICLExample.model_validate(e) for e in out["optimized_icl_examples"]],
        [ICLOptimizationRecord.model_validate(r) for r in out["icl_records"]],
    )


async def aoptimize_icl_examples(
    examples: Sequence[ICLExample | Mapping[str, object]],
    *,
    judge: str | BaseChatModel,
    rewriter: str | BaseChatModel | None = None,
    config: ICLStageConfig | None = None,
    aspects: AspectCatalog | None = None,
    callbacks: Callbacks = None,
) -> tuple[list[ICLExample], list[ICLOptimizationRecord]]:
    """Optimise the answers of ``examples`` (see the module docs); examples run concurrently.

    Returns:
        The optimized examples (same order and ids; an answer is replaced only by a strictly
        better-scoring rewrite) and one record per example with every round's scores.

    Raises:
        ConfigError: if an example is invalid or two share an id.
    """
    cfg = config or ICLStageConfig()
    app = create_icl_stage_graph(judge, rewriter, config=cfg, aspects=aspects).compile(name=_RUN_NAME)
    return _results(
        cast(ICLStageOutput, await app.ainvoke({"icl_examples": list(examples)}, _run_config(cfg, callbacks)))
    )


def optimize_icl_examples(
    examples: Sequence[ICLExample | Mapping[str, object]],
    *,
    judge: str | BaseChatModel,
    rewriter: str | BaseChatModel | None = None,
    config: ICLStageConfig | None = None,
    aspects: AspectCatalog | None = None,
    callbacks: Callbacks = None,
) -> tuple[list[ICLExample], list[ICLOptimizationRecord]]:
    """Blocking :func:`aoptimize_icl_examples` (runs the graph with ``invoke``)."""
    cfg = config or ICLStageConfig()
    app = create_icl_stage_graph(judge, rewriter, config=cfg, aspects=aspects).compile(name=_RUN_NAME)
    return _results(
        cast(ICLStageOutput, app.invoke({"icl_examples": list(examples)}, _run_config(cfg, callbacks)))
    )


__all__ = [
    "AnswerRewriter",
    "ICLStageConfig",
    "ICLStageInput",
    "ICLStageOutput",
    "ICLStageState",
    "aoptimize_icl_examples",
    "create_icl_stage_graph",
    "optimize_icl_examples",
]
