"""A run's memory, opened in one place: where it is, and the stores the search uses there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drpo_agents.embeddings import EmbeddingsLike, resolve_embeddings
from drpo_agents.infra.run_files import MEMORY_DIR
from drpo_agents.memory.base import CritiqueMemory, check_critique_memory
from drpo_agents.memory.in_memory import InMemoryCritiqueMemory
from drpo_agents.retrieval import ICLRetriever
from drpo_agents.schemas import ICLExample

MemoryLocation = str | Path | CritiqueMemory | None
"""A folder (embedded Chroma), an ``http(s)://host:port`` Chroma server, a :class:`CritiqueMemory`
object, or None (the default location)."""


def memory_location(memory: MemoryLocation, run_dir: Path | None) -> str | Path | CritiqueMemory | None:
    """Where a run keeps its memory: ``memory`` if given (share one location between runs so a
    run learns from the runs before it); else ``memory/`` inside the run directory, the run's own
    (nothing is written outside it, and a run's result does not depend on other runs); else
    None, a memory in this process only (a run without a directory)."""
    if memory is not None:
        return memory
    return run_dir / MEMORY_DIR if run_dir is not None else None


@dataclass(frozen=True)
class RunMemory:
    """What a run uses its memory for: critiques, and (in Chroma) the ICL examples' vectors."""

    critiques: CritiqueMemory | None  # None: the critique memory is off
    icl_retrievers: Callable[[list[ICLExample]], ICLRetriever] | None  # None: retrieve in memory


def open_memory(
    location: str | Path | CritiqueMemory | None,
    *,
    enabled: bool,
    embeddings: EmbeddingsLike | None = None,
    min_similarity: float | None = None,
) -> RunMemory:
    """The stores at ``location`` (see :func:`memory_location`); nothing is opened when ``enabled``
    is false (``DRPOConfig.critique_memory``).

    Raises:
        ConfigError: a custom memory that does not implement :class:`CritiqueMemory`, or a bad URL.
        ServiceUnavailableError: a Chroma server that cannot be reached.
    """
    if not enabled:
        return RunMemory(None, None)
    if location is None:
        return RunMemory(InMemoryCritiqueMemory(), None)
    if not isinstance(location, str | Path):
        check_critique_memory(location)
        return RunMemory(location, None)
    from drpo_agents.memory.chroma import ChromaCritiqueMemory
    from drpo_agents.memory.chroma_connection import chroma_client
    from drpo_agents.memory.chroma_icl import ChromaICLRetriever

    client = chroma_client(location)
    icl_embeddings = resolve_embeddings(embeddings)

    def icl_retriever(examples: list[ICLExample]) -> ICLRetriever:
        return ChromaICLRetriever(
            examples, client=client, embeddings=icl_embeddings, min_similarity=min_similarity
        )

    return RunMemory(ChromaCritiqueMemory(client=client), icl_retriever)
