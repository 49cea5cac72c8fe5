"""The three DRPO agents. They know nothing of the search; the search calls them."""

from drpo_agents.agents.judge import Judge
from drpo_agents.agents.responder import Responder, Response
from drpo_agents.agents.rewriter import PromptRewriter, RewriteCase, count_bullets

__all__ = ["Judge", "PromptRewriter", "Responder", "Response", "RewriteCase", "count_bullets"]
