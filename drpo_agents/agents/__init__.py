"""The DRPO agents (responder, judge, prompt and ICL answer rewriters). They know nothing of the
search; the search, the ICL stage and the evaluation harness call them."""

from drpo_agents.agents.answer_rewriter import AnswerRewriter
from drpo_agents.agents.judge import Judge
from drpo_agents.agents.jury import JuryVerdict
from drpo_agents.agents.responder import Responder, Response
from drpo_agents.agents.rewriter import PromptRewriter, RewriteCase, count_bullets

__all__ = [
    "AnswerRewriter",
    "Judge",
    "JuryVerdict",
    "PromptRewriter",
    "Responder",
    "Response",
    "RewriteCase",
    "count_bullets",
]
