"""The prompt rewriter: turns a critique into new candidate system prompts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from drpo_agents.agents.structured_agent import StructuredAgent
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.conversations import Turn, conversation_block
from drpo_agents.infra.calls import CallPlan, arun_plan, run_plan
from drpo_agents.json_types import JsonSchema
from drpo_agents.prompts import approx_tokens, render_prompt
from drpo_agents.schemas import (
    AnswerEvaluation,
    PromptProposal,
    PromptProposals,
    ProposalLimits,
    new_prompt_rule,
)
from drpo_agents.structured import StructuredMethods, StructuredResult, provider_schema

_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", re.MULTILINE)
_WORD = re.compile(r"\w+")
# A run of this many query words appearing in a prompt means the prompt copied the query.
_COPIED_RUN = 8
# A quoted span: the opening quote starts a word (so apostrophes in "don't" do not count).
_QUOTED = re.compile(r"(?:^|(?<=[\s(:]))[\"\u201c\u2018']([^\"\u201d\u2019']{3,200})[\"\u201d\u2019']")


def proposals_schema(limits: ProposalLimits) -> JsonSchema:
    """The schema sent for a rewrite: at most ``limits.count`` proposals, and the bullet budget
    in each ``new_prompt``'s description. A grammar-decoding server then stops at the count, a
    model sees the budget beside the field, and the sandbox rewriter reads both from here
    (:func:`read_proposal_limits`) rather than from the wording of a prompt template; replies
    are still validated with :class:`PromptProposals`."""
    schema = provider_schema(PromptProposals)
    proposals = schema["properties"]["proposals"]
    proposals["maxItems"] = limits.count  # at most 16 (DRPOConfig.n_actions): a grammar copes
    proposals["items"]["properties"]["new_prompt"]["description"] = new_prompt_rule(limits)
    return schema


def count_bullets(prompt: str) -> int:
    """Number of bullet or numbered-list lines in a prompt."""
    return len(_BULLET.findall(prompt))


def _copies_query(prompt: str, query: str) -> bool:
    """Whether ``prompt`` carries text lifted from ``query``: a run of 8 words, or any quoted span
    of 2+ words (what an injection like 'add the sentence "..." to your prompt' would plant)."""
    haystack = " " + " ".join(_WORD.findall(prompt.casefold())) + " "
    words = _WORD.findall(query.casefold())
    runs = (" ".join(words[i : i + _COPIED_RUN]) for i in range(len(words) - _COPIED_RUN + 1))
    quoted = (" ".join(_WORD.findall(span.casefold())) for span in _QUOTED.findall(query))
    return any(f" {text} " in haystack for text in (*runs, *quoted) if text.count(" ") >= 1)


@dataclass
class RewriteCase:
    """One piece of evidence for the rewriter: a query, the answer given, and its evaluation."""

    query: str
    answer: str
    evaluation: AnswerEvaluation
    history: Sequence[Turn] = ()  # a conversation's earlier turns, quoted so a critique has its context


def format_evaluation(evaluation: AnswerEvaluation) -> str:
    """``- Aspect: N/5 - rationale`` lines (the form the rewrite template shows)."""
    return "\n".join(f"- {s.aspect}: {s.score}/5 - {s.rationale}" for s in evaluation.scores)


class PromptRewriter(StructuredAgent):
    """Proposes ``n`` new system prompts from the current one and its critique.

    Proposals are checked before they are accepted: not blank, not the current prompt again,
    within the bullet budget (``max_bullets`` total, ``max_new_bullets`` added), and not
    copying a training query. A reply with no acceptable proposal is re-asked with the reasons.
    """

    role = "rewriter"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        max_bullets: int = 8,
        max_new_bullets: int = 2,
        max_prompt_tokens: int | None = None,
        method: StructuredOutputMethod = "auto",
        max_retries: int = 2,
        prompts_dir: Path | None = None,
        methods: StructuredMethods | None = None,
    ) -> None:
        super().__init__(
            model, method=method, max_retries=max_retries, prompts_dir=prompts_dir, methods=methods
        )
        self.max_bullets = max_bullets
        self.max_new_bullets = max_new_bullets
        self.max_prompt_tokens = max_prompt_tokens

    def rejection_reason(
        self, proposal: PromptProposal, current_prompt: str, queries: Sequence[str]
    ) -> str | None:
        """Why ``proposal`` is unacceptable, or None if it is fine."""
        prompt = proposal.new_prompt
        if prompt.strip() == current_prompt.strip():
            return "it repeats the current prompt unchanged"
        bullets = count_bullets(prompt)
        if bullets > self.max_bullets:
            return f"it has {bullets} bullets; the limit is {self.max_bullets}"
        if self.max_prompt_tokens is not None and (size := approx_tokens(prompt)) > self.max_prompt_tokens:
            return f"it is about {size} tokens long; the budget is {self.max_prompt_tokens}"
        added = bullets - count_bullets(current_prompt)
        if added > self.max_new_bullets:
            return f"it adds {added} bullets; at most {self.max_new_bullets} may be added per rewrite"
        if any(_copies_query(prompt, q) for q in queries):
            return "it copies text from a training query; prompts must stay general"
        return None

    def plan_propose(
        self,
        current_prompt: str,
        cases: Sequence[RewriteCase],
        *,
        n: int,
        previous_prompts: Sequence[str] = (),
        lessons: Sequence[str] = (),
        lesson_queries: Sequence[str] = (),
        config: RunnableConfig | None = None,
    ) -> CallPlan[StructuredResult[PromptProposals]]:
        """Up to ``n`` distinct, acceptable new prompts, at least one (a call plan).

        ``lesson_queries``: the queries the ``lessons`` quote; a proposal copying one is rejected
        like one copying a case's query."""
        rendered_cases = "\n".join(
            render_prompt(
                "rewrite_case",
                self.prompts_dir,
                conversation=conversation_block(c.history),
                query=c.query,
                answer=c.answer or "(empty answer)",
                evaluation=format_evaluation(c.evaluation),
            )
            for c in cases
        )
        prompt = render_prompt(
            "prompt_rewrite",
            self.prompts_dir,
            current_prompt=current_prompt,
            previous_prompts="\n---\n".join(previous_prompts) or "(none)",
            cases=rendered_cases,
            lessons="\n".join(f"- {lesson}" for lesson in lessons) or "(none yet)",
            num_prompts=n,
            max_bullets=self.max_bullets,
            max_new_bullets=self.max_new_bullets,
            size_rule=(
                f"Keep the whole prompt under about {self.max_prompt_tokens} tokens "
                f"({self.max_prompt_tokens * 3 // 4} words)."
                if self.max_prompt_tokens is not None
                else "Keep the prompt as short as it can be while doing its job."
            ),
        )
        queries = [c.query for c in cases] + list(lesson_queries)

        def acceptable(result: PromptProposals) -> PromptProposals:
            kept: list[PromptProposal] = []
            reasons: list[str] = []
            seen = {current_prompt.strip()}
            for index, proposal in enumerate(result.proposals, start=1):
                reason = self.rejection_reason(proposal, current_prompt, queries)
                if reason is None and proposal.new_prompt in seen:
                    reason = "it duplicates another proposal"
                if reason:
                    reasons.append(f"proposal {index} rejected: {reason}")
                    continue
                seen.add(proposal.new_prompt)
                kept.append(proposal)
            if not kept:
                raise ValueError("; ".join(reasons))
            accepted = PromptProposals(proposals=kept[:n])
            accepted.rejected.extend(reasons)  # proposals dropped from an otherwise usable reply
            return accepted

        return (
            yield from self.plan_ask(
                PromptProposals,
                "rewriter_system",
                prompt,
                step="rewrite_prompt",
                config=config,
                validate=acceptable,
                wire_schema=proposals_schema(ProposalLimits(n, self.max_bullets, self.max_new_bullets)),
            )
        )

    def propose(
        self, current_prompt: str, cases: Sequence[RewriteCase], *, n: int, **kwargs: Any
    ) -> list[PromptProposal]:
        """Blocking :meth:`plan_propose`, returning the proposals."""
        return run_plan(self.plan_propose(current_prompt, cases, n=n, **kwargs)).value.proposals

    async def apropose(
        self, current_prompt: str, cases: Sequence[RewriteCase], *, n: int, **kwargs: Any
    ) -> list[PromptProposal]:
        """Async :meth:`plan_propose`, returning the proposals."""
        return (await arun_plan(self.plan_propose(current_prompt, cases, n=n, **kwargs))).value.proposals
