"""Where DRPO keeps what it learns: ICL examples and past critiques (Chroma, or in memory).

The Chroma classes load on first use: importing ``chromadb`` takes about half a second, which
``drpo --help``, ``drpo inspect`` and runs without a Chroma memory need not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drpo_agents.memory.base import Critique, CritiqueMemory, Lesson, ListableCritiqueMemory, RunLedger
from drpo_agents.memory.in_memory import InMemoryCritiqueMemory

if TYPE_CHECKING:
    from drpo_agents.memory.chroma import ChromaCritiqueMemory
    from drpo_agents.memory.chroma_connection import chroma_client
    from drpo_agents.memory.chroma_icl import ChromaICLRetriever

__all__ = [
    "ChromaCritiqueMemory",
    "ChromaICLRetriever",
    "Critique",
    "CritiqueMemory",
    "InMemoryCritiqueMemory",
    "Lesson",
    "ListableCritiqueMemory",
    "RunLedger",
    "chroma_client",
]

_CHROMA_NAMES = {
    "ChromaCritiqueMemory": "drpo_agents.memory.chroma",
    "chroma_client": "drpo_agents.memory.chroma_connection",
    "ChromaICLRetriever": "drpo_agents.memory.chroma_icl",
}


def __getattr__(name: str) -> Any:
    if name in _CHROMA_NAMES:
        return getattr(importlib.import_module(_CHROMA_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
