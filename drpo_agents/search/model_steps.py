"""The model-calling nodes as call plans (one body for invoke and ainvoke)."""

from __future__ import annotations

from functools import partial

from langchain_core.runnables import RunnableConfig, RunnableLambda

from drpo_agents.agents import RewriteCase as AgentRewriteCase
from drpo_agents.errors import error_text, recoverable_errors
from drpo_agents.infra.calls import CallPlan, ModelCall, call_config
from drpo_agents.memory import Lesson
from drpo_agents.schemas import AnswerEvaluation, AspectSelection, ICLExample
from drpo_agents.search.context import SearchContext, tagged
from drpo_agents.search.lessons import recall_lessons
from drpo_agents.search.records import (
    AspectChoice,
    AspectTask,
    Candidate,
    EvaluateTask,
    Evaluation,
    Failure,
    RewriteTask,
    candidate_id,
    new_candidate,
    score_of,
)
from drpo_agents.search.state import DRPOUpdate
from drpo_agents.usage import UsageByRole, merge_usage, usage_of

# Aspects used when the judge cannot select any for a query; the record says so.
FALLBACK_ASPECTS = ("Helpfulness", "Clarity", "Factuality")


def plan_select_aspects(ctx: SearchContext, task: AspectTask, config: RunnableConfig) -> CallPlan[DRPOUpdate]:
    """Ask the judge which aspects matter for one training query."""
    try:
        result = yield from ctx.judge.plan_select_aspects(
            task["query"], config=tagged(config, task, "query_id", "level"), history=task.get("history", [])
        )
    except recoverable_errors() as exc:
        fallback = AspectSelection(
            reasoning=f"Fallback aspects: aspect selection failed ({error_text(exc)}).",
            selected_aspects=list(FALLBACK_ASPECTS),
        )
        failure: Failure = {
            "step": "select_aspects",
            "level": task["level"],
            "query_id": task["query_id"],
            "error": error_text(exc),
        }
        return {
            "usage": usage_of("judge", getattr(exc, "messages", [])),
            "structured_methods": ctx.methods_used("judge"),
            "aspect_cache": {task["query_id"]: {**_choice(fallback), "fallback": True}},
            "failures": [failure],
        }
    selection = _choice(result.value)
    missing = [a for a in task.get("required_aspects", []) if a not in selection["selected_aspects"]]
    if missing:
        selection["selected_aspects"] = [*selection["selected_aspects"][: 5 - len(missing)], *missing]
        selection["required"] = missing
    return {
        "aspect_cache": {task["query_id"]: selection},
        "usage": usage_of("judge", result.messages),
        "structured_methods": {"judge": result.method},
    }


def _choice(selection: AspectSelection) -> AspectChoice:
    analysis = selection.query_analysis
    return {
        "query_analysis": analysis.model_dump() if analysis is not None else None,
        "reasoning": selection.reasoning,
        "selected_aspects": list(selection.selected_aspects),
    }


def plan_rewrite(ctx: SearchContext, task: RewriteTask, config: RunnableConfig) -> CallPlan[DRPOUpdate]:
    """Ask the rewriter for ``n_actions`` children of one beam candidate."""
    cases = [
        AgentRewriteCase(
            query=c["query"],
            answer=c["answer"],
            evaluation=AnswerEvaluation.model_validate({"scores": c["scores"]}),
            history=c.get("history", []),
        )
        for c in task["cases"]
    ]
    node_config = tagged(config, task, "parent_id", "level")
    recalled: list[Lesson] = []
    if ctx.memory is not None and (ctx.config.memory_k or ctx.config.memory_rules):
        recall_config = call_config(node_config, "memory", "recall_critiques")
        recall = RunnableLambda(partial(recall_lessons, ctx), name="drpo_recall_critiques")
        recalled = yield ModelCall(recall, task, recall_config)
    lessons = [lesson.text for lesson in recalled]
    lesson_queries = [lesson.query for lesson in recalled if lesson.query]
    lesson_runs = ["+".join(lesson.runs) for lesson in recalled]
    try:
        result = yield from ctx.rewriter.plan_propose(
            task["prompt"],
            cases,
            n=ctx.config.n_actions,
            previous_prompts=task["previous_prompts"],
            lessons=lessons,
            lesson_queries=lesson_queries,
            config=node_config,
        )
    except recoverable_errors() as exc:
        failure: Failure = {
            "step": "rewrite",
            "level": task["level"],
            "candidate_id": task["parent_id"],
            "error": error_text(exc),
        }
        return {
            "usage": usage_of("rewriter", getattr(exc, "messages", [])),
            "structured_methods": ctx.methods_used("rewriter"),
            "failures": [failure],
        }
    children: dict[str, Candidate] = {}
    for index, proposal in enumerate(result.value.proposals):
        child_id = candidate_id(task["level"], task["rank"], index)
        children[child_id] = new_candidate(
            child_id,
            parent_id=task["parent_id"],
            prompt=proposal.new_prompt,
            level=task["level"],
            analysis=proposal.analysis,
            thought=proposal.thought,
            lessons=lessons,
            lesson_runs=lesson_runs,
        )
    dropped: list[Failure] = [
        {"step": "rewrite", "level": task["level"], "candidate_id": task["parent_id"], "error": reason}
        for reason in result.value.rejected
    ]
    return {
        "candidates": children,
        "usage": usage_of("rewriter", result.messages),
        "failures": dropped,
        "structured_methods": {"rewriter": result.method},
    }


def plan_evaluate(ctx: SearchContext, task: EvaluateTask, config: RunnableConfig) -> CallPlan[DRPOUpdate]:
    """Answer one training query under one candidate prompt and judge the answer."""
    record: Evaluation = {
        "candidate_id": task["candidate_id"],
        "level": task["level"],
        "query_id": task["query_id"],
        "query": task["query"],
        "aspects": list(task["aspects"]),
        "answer": "",
        "scores": [],
        "reward": None,
        "error": None,
        "phase": task.get("phase", "search"),
    }
    node_config = tagged(config, task, "candidate_id", "query_id", "level")
    usage: UsageByRole = {}
    try:
        response = yield from ctx.responder.plan_respond(
            task["prompt"],
            task["query"],
            examples=[ICLExample.model_validate(e) for e in task.get("icl", [])],
            config=node_config,
            history=task.get("history", []),
            app_system=task.get("system", ""),
        )
        record["answer"] = response.answer
        usage.update(usage_of("responder", response.messages))
        verdict = yield from ctx.judge.plan_verdict(
            task["query"],
            response.answer,
            task["aspects"],
            config=node_config,
            history=task.get("history", []),
        )
    except recoverable_errors() as exc:
        record["error"] = error_text(exc)
        # A judge reply that was finally rejected was still paid for.
        role = "judge" if record["answer"] else "responder"
        usage = merge_usage(usage, usage_of(role, getattr(exc, "messages", [])))
        return {"evaluations": [record], "usage": usage, "structured_methods": ctx.methods_used("judge")}
    for key, messages in verdict.messages.items():
        usage = merge_usage(usage, usage_of(key, messages))
    record["scores"] = [score_of(s) for s in verdict.evaluation.scores]
    record["reward"] = verdict.reward
    if len(verdict.jurors) > 1:
        record["jury"] = [[score_of(s) for s in j.scores] if j else [] for j in verdict.jurors]
        record["jury_errors"] = verdict.errors
        record["disagreement"] = verdict.disagreement
    return {"evaluations": [record], "usage": usage, "structured_methods": ctx.methods_used("judge")}
