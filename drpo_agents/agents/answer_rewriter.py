"""The ICL answer rewriter: turns a critique of an in-context example's answer into a better answer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from drpo_agents.agents.rewriter import format_evaluation
from drpo_agents.calls import CallPlan, call_config
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.prompts import render_prompt
from drpo_agents.schemas import AnswerEvaluation, AnswerRewrite
from drpo_agents.structured import StructuredMethods, StructuredResult, plan_structured


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
