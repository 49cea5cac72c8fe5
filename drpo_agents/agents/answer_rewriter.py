"""The ICL answer rewriter: turns a critique of an in-context example's answer into a better answer."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.runnables import RunnableConfig

from drpo_agents.agents.rewriter import format_evaluation
from drpo_agents.agents.structured_agent import StructuredAgent
from drpo_agents.conversations import Turn, conversation_block
from drpo_agents.infra.calls import CallPlan
from drpo_agents.prompts import render_prompt
from drpo_agents.schemas import AnswerEvaluation, AnswerRewrite
from drpo_agents.structured import StructuredResult


class AnswerRewriter(StructuredAgent):
    """Rewrites an ICL example's answer from its critique (one improved answer per call).

    A reply that repeats the current answer unchanged is re-asked with that reason.
    """

    role = "rewriter"

    def plan_rewrite(
        self,
        query: str,
        answer: str,
        evaluation: AnswerEvaluation,
        *,
        earlier_attempts: Sequence[str] = (),
        config: RunnableConfig | None = None,
        history: Sequence[Turn] = (),
    ) -> CallPlan[StructuredResult[AnswerRewrite]]:
        """A better answer to ``query`` than ``answer``, given the judge's ``evaluation`` (a call
        plan); ``history``: the example conversation's earlier turns, shown before the query."""
        prompt = render_prompt(
            "icl_answer_rewrite",
            self.prompts_dir,
            conversation=conversation_block(history),
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
            yield from self.plan_ask(
                AnswerRewrite,
                "icl_rewriter_system",
                prompt,
                step="rewrite_icl_answer",
                config=config,
                validate=changed,
            )
        )
