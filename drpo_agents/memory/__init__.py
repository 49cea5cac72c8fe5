"""Where DRPO keeps what it learns: ICL examples and past critiques (Chroma, or in memory)."""

from drpo_agents.memory.base import Critique, CritiqueMemory
from drpo_agents.memory.chroma import ChromaCritiqueMemory, ChromaICLRetriever, chroma_client
from drpo_agents.memory.in_memory import InMemoryCritiqueMemory

__all__ = [
    "ChromaCritiqueMemory",
    "ChromaICLRetriever",
    "Critique",
    "CritiqueMemory",
    "InMemoryCritiqueMemory",
    "chroma_client",
]
