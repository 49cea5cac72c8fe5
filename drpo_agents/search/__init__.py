"""The DRPO beam search as a LangGraph ``StateGraph``."""

from drpo_agents.search.graph import create_drpo_graph
from drpo_agents.search.state import DRPOInput, DRPOState

__all__ = ["DRPOInput", "DRPOState", "create_drpo_graph"]
