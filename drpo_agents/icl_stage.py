"""DRPO's first stage: optimise the answers of the in-context (ICL) examples.

For each seed example (query, answer) the judge selects the aspects that matter for the query
and scores the answer on them; the rewriter rewrites the *answer* from that critique; the judge
scores the rewrite; up to ``num_iters`` rounds, stopping early once every aspect scores 5.

Keeping the best answer: the original answer is the initial best, and a rewrite replaces the
best only when its mean score is *strictly* higher. (The reference implementation replaced on
``>=``; with a judge that ties often, that lets an equally-scored rewrite drift away from a
hand-written answer for no measured gain.) Each round rewrites the current best answer from
its own critique; rewrites that did not win are summarised in the next request so the
rewriter tries something different. A failed call (see :func:`~drpo_agents.errors.recoverable_errors`)
ends that example's rounds, is recorded, and keeps the best answer so far (at worst, the original).

The stage is a LangGraph ``StateGraph`` (:func:`create_icl_stage_graph`): one ``Send`` task per
example, so examples run in parallel and a checkpointed run resumes only unfinished examples.
:func:`optimize_icl_examples` / :func:`aoptimize_icl_examples` run it in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Required, cast

from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from drpo_agents.agents import Judge
from drpo_agents.agents.rewriter import format_evaluation
from drpo_agents.artifact import ICLOptimizationRecord
from drpo_agents.aspects import AspectCatalog
from drpo_agents.calls import CallPlan, call_config, plan_node
from drpo_agents.config import DEFAULT_ROLE_MAX_TOKENS, DRPOConfig, Role, StructuredOutputMethod
from drpo_agents.errors import ConfigError, error_text, recoverable_errors
from drpo_agents.models.registry import default_rewriter, resolve_model, with_output_limit
from drpo_agents.prompts import render_prompt
from drpo_agents.schemas import AnswerEvaluation, AnswerRewrite, ICLExample
from drpo_agents.search.state import merge_records
from drpo_agents.structured import StructuredMethods, StructuredResult, plan_structured
from drpo_agents.usage import UsageByRole, merge_usage, usage_of


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


class ICLStageInput(TypedDict):
    """The seed examples: :class:`ICLExample` objects or ``{"query", "answer", "id"?}`` dicts."""

    icl_examples: Required[list[Any]]


class ICLStageState(ICLStageInput, total=False):
    """Plain JSON state: the validated examples, one result record per example id, usage."""

    icl_prepared: list[dict[str, str]]
    icl_results: Annotated[dict[str, dict[str, Any]], merge_records]
    optimized_icl_examples: list[dict[str, Any]]
    icl_records: list[dict[str, Any]]
    usage: Annotated[UsageByRole, merge_usage]


class ICLStageOutput(TypedDict, total=False):
    """The optimized examples (input order) and one :class:`ICLOptimizationRecord` dict per example."""

    optimized_icl_examples: list[dict[str, Any]]
    icl_records: list[dict[str, Any]]
    usage: UsageByRole


class AnswerRewriter:
    """Rewrites an ICL example's answer from its critique (one improved answer per call).

    A reply that repeats the current answer unchanged is re-asked with that reason.
    """

    role = "rewriter"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        method: StructuredOutputMethod = "auto",
        max_retries: int = 2,
        prompts_dir: Path | None = None,
        methods: StructuredMethods | None = None,
    ) -> None:
        self.model = model
        self.methods = methods
        self.method: StructuredOutputMethod = method
        self.max_retries = max_retries
        self.prompts_dir = prompts_dir

    def plan_rewrite(
        self,
        query: str,
        answer: str,
        evaluation: AnswerEvaluation,
        *,
        earlier_attempts: Sequence[str] = (),
        config: RunnableConfig | None = None,
    ) -> CallPlan[StructuredResult[AnswerRewrite]]:
        """A better answer to ``query`` than ``answer``, given the judge's ``evaluation`` (a call plan)."""
        prompt = render_prompt(
            "icl_answer_rewrite",
            self.prompts_dir,
            query=query,
            answer=answer,
            evaluation=format_evaluation(evaluation),
            earlier_attempts="\n".join(f"- {a}" for a in earlier_attempts) or "(none)",
        )

        def changed(rewrite: AnswerRewrite) -> AnswerRewrite:
            if rewrite.new_answer.strip() == answer.strip():
                raise ValueError("new_answer repeats the current answer unchanged")
            return rewrite

        return (
            yield from plan_structured(
                self.model,
                AnswerRewrite,
                [SystemMessage(render_prompt("icl_rewriter_system", self.prompts_dir)), HumanMessage(prompt)],
                method=self.method,
                max_retries=self.max_retries,
                validate=changed,
                config=call_config(config, self.role, "rewrite_icl_answer"),
                prompts_dir=self.prompts_dir,
                methods=self.methods,
            )
        )


def _all_fives(evaluation: AnswerEvaluation) -> bool:
    return all(s.score == 5 for s in evaluation.scores)


def _weakest(evaluation: AnswerEvaluation) -> str:
    low = min(s.score for s in evaluation.scores)
    return ", ".join(f"{s.aspect} {s.score}/5" for s in evaluation.scores if s.score == low)


class _ICLStage:
    """The agents plus the config; its methods are the subgraph's nodes and router."""

    def __init__(self, judge: Judge, rewriter: AnswerRewriter, config: ICLStageConfig) -> None:
        self.judge = judge
        self.rewriter = rewriter
        self.config = config

    def prepare(self, state: ICLStageState) -> dict[str, Any]:
        """Validate the examples and give each a unique id (``icl01``, ... when missing)."""
        prepared: list[dict[str, str]] = []
        for index, raw in enumerate(state.get("icl_examples") or []):
            try:
                example = raw if isinstance(raw, ICLExample) else ICLExample.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(f"ICL example #{index + 1} is invalid: {exc}") from exc
            example_id = example.id or f"icl{index + 1:02d}"
            if any(p["id"] == example_id for p in prepared):
                raise ConfigError(f"ICL example id {example_id!r} is used twice")
            prepared.append({"id": example_id, "query": example.query, "answer": example.answer})
        return {"icl_prepared": prepared}

    def route_examples(self, state: ICLStageState) -> list[Send] | str:
        """One ``optimize`` task per example not optimised yet."""
        done = state.get("icl_results") or {}
        sends = [
            Send("icl_optimize_example", {"example": e})
            for e in state.get("icl_prepared", [])
            if e["id"] not in done
        ]
        return sends or "icl_collect"

    def collect(self, state: ICLStageState) -> dict[str, Any]:
        """The optimized examples and records, in input order."""
        results = state.get("icl_results") or {}
        records = [results[e["id"]] for e in state.get("icl_prepared", [])]
        examples = [
            ICLExample(id=r["example_id"], query=r["query"], answer=r["final_answer"]).model_dump()
            for r in records
        ]
        return {"optimized_icl_examples": examples, "icl_records": records}

    def plan_optimize_example(self, task: dict[str, Any], config: RunnableConfig) -> CallPlan[dict[str, Any]]:
        """Select aspects, score, then rewrite-and-rescore up to ``num_iters`` times; keep the best."""
        example = task["example"]
        query, original = example["query"], example["answer"]
        record: dict[str, Any] = {
            "example_id": example["id"],
            "query": query,
            "aspects": [],
            "original_answer": original,
            "final_answer": original,
            "best_round": 0,
            "initial_reward": None,
            "best_reward": None,
            "rounds": [],
            "stop_reason": "",
            "error": None,
        }
        usage: UsageByRole = {}
        cfg = cast(
            RunnableConfig,
            {**config, "metadata": {**config.get("metadata", {}), "drpo_icl_example_id": example["id"]}},
        )

        def finish(stop_reason: str, error: BaseException | None = None) -> dict[str, Any]:
            record["stop_reason"] = stop_reason
            if error is not None:
                record["error"] = error_text(error)
            return {"icl_results": {example["id"]: record}, "usage": usage}

        try:
            selection = yield from self.judge.plan_select_aspects(query, config=cfg)
            usage = merge_usage(usage, usage_of("judge", selection.messages))
            aspects = selection.value.selected_aspects
            record["aspects"] = list(aspects)
            scored = yield from self.judge.plan_score(query, original, aspects, config=cfg)
        except recoverable_errors() as exc:
            # Without a score of the original nothing can be compared: keep it unchanged.
            return finish("the original answer could not be judged", exc)
        usage = merge_usage(usage, usage_of("judge", scored.messages))
        best_answer, best = original, scored.value
        record["initial_reward"] = record["best_reward"] = best.reward
        record["rounds"].append(
            {
                "round": 0,
                "answer": original,
                "scores": [s.model_dump() for s in best.scores],
                "reward": best.reward,
                "accepted": True,
                "analysis": "The original answer.",
                "error": None,
            }
        )
        earlier: list[str] = []
        for number in range(1, self.config.num_iters + 1):
            if _all_fives(best):
                break
            new_answer, analysis = "", ""
            try:
                rewrite = yield from self.rewriter.plan_rewrite(
                    query, best_answer, best, earlier_attempts=earlier, config=cfg
                )
                usage = merge_usage(usage, usage_of("rewriter", rewrite.messages))
                new_answer, analysis = rewrite.value.new_answer, rewrite.value.analysis
                rescored = yield from self.judge.plan_score(query, new_answer, aspects, config=cfg)
            except recoverable_errors() as exc:
                record["rounds"].append(
                    {
                        "round": number,
                        "answer": new_answer,
                        "scores": [],
                        "reward": None,
                        "accepted": False,
                        "analysis": analysis,
                        "error": error_text(exc),
                    }
                )
                return finish(f"round {number} failed; kept the best answer so far", exc)
            usage = merge_usage(usage, usage_of("judge", rescored.messages))
            evaluation = rescored.value
            accepted = evaluation.reward > best.reward  # strictly better: ties keep the current best
            record["rounds"].append(
                {
                    "round": number,
                    "answer": new_answer,
                    "scores": [s.model_dump() for s in evaluation.scores],
                    "reward": evaluation.reward,
                    "accepted": accepted,
                    "analysis": analysis,
                    "error": None,
                }
            )
            if accepted:
                best_answer, best = new_answer, evaluation
                record.update(final_answer=new_answer, best_round=number, best_reward=evaluation.reward)
                earlier = []  # a new answer to improve: earlier attempts were at the old one
            else:
                earlier.append(
                    f"attempt {number} scored {evaluation.reward:.2f}/5, not above the current "
                    f"{best.reward:.2f}/5 (its weakest: {_weakest(evaluation)})"
                )
        if _all_fives(best):
            return finish("every aspect scored 5")
        return finish(f"ran {self.config.num_iters} round(s)")


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
    judge_model = resolve_model(judge, "judge")
    rewriter_model = resolve_model(rewriter if rewriter is not None else default_rewriter(judge), "rewriter")
    if not isinstance(judge_model, BaseChatModel) or not isinstance(rewriter_model, BaseChatModel):
        raise TypeError("the judge and the rewriter must be chat models")
    methods = methods if methods is not None else StructuredMethods()
    stage = _ICLStage(
        Judge(
            with_output_limit(
                judge_model, cfg.role_max_tokens.get("judge", DEFAULT_ROLE_MAX_TOKENS["judge"])
            ),
            catalog=aspects,
            method=cfg.role_structured_output.get("judge", cfg.structured_output_method),
            max_retries=cfg.max_parse_retries,
            prompts_dir=cfg.prompts_dir,
            methods=methods,
        ),
        AnswerRewriter(
            with_output_limit(
                rewriter_model, cfg.role_max_tokens.get("rewriter", DEFAULT_ROLE_MAX_TOKENS["rewriter"])
            ),
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


def _run_config(cfg: ICLStageConfig, callbacks: Callbacks) -> RunnableConfig:
    return cast(
        RunnableConfig,
        {"max_concurrency": cfg.max_concurrency, "callbacks": callbacks, "run_name": "drpo_icl_stage"},
    )


def _results(out: dict[str, Any]) -> tuple[list[ICLExample], list[ICLOptimizationRecord]]:
    return (
        [ICLExample.model_validate(e) for e in out["optimized_icl_examples"]],
        [ICLOptimizationRecord.model_validate(r) for r in out["icl_records"]],
    )


async def aoptimize_icl_examples(
    examples: Sequence[ICLExample | dict[str, Any]],
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
    app = create_icl_stage_graph(judge, rewriter, config=cfg, aspects=aspects).compile(name="drpo_icl_stage")
    out = await app.ainvoke({"icl_examples": list(examples)}, _run_config(cfg, callbacks))
    return _results(out)


def optimize_icl_examples(
    examples: Sequence[ICLExample | dict[str, Any]],
    *,
    judge: str | BaseChatModel,
    rewriter: str | BaseChatModel | None = None,
    config: ICLStageConfig | None = None,
    aspects: AspectCatalog | None = None,
    callbacks: Callbacks = None,
) -> tuple[list[ICLExample], list[ICLOptimizationRecord]]:
    """Blocking :func:`aoptimize_icl_examples` (runs the graph with ``invoke``)."""
    cfg = config or ICLStageConfig()
    app = create_icl_stage_graph(judge, rewriter, config=cfg, aspects=aspects).compile(name="drpo_icl_stage")
    out = app.invoke({"icl_examples": list(examples)}, _run_config(cfg, callbacks))
    return _results(out)


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
