"""Text embeddings for ICL retrieval and critique recall, chosen by name or given as an object.

``"minilm"`` (the default): all-MiniLM-L6-v2, semantic, offline, torch-free
(:class:`MiniLMEmbeddings`). ``"hashing"``: lexical, no model (:class:`HashingEmbeddings`). Any
LangChain ``Embeddings`` object, or a Chroma embedding function, works too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.embeddings import Embeddings

from drpo_agents.embeddings.hashing import HashingEmbeddings
from drpo_agents.embeddings.minilm import MiniLMEmbeddings
from drpo_agents.errors import ConfigError

EmbeddingsLike = Embeddings | Callable[[list[str]], Any] | str
"""What every ``embeddings=`` parameter takes: a name (``"minilm"``, ``"hashing"``), LangChain
``Embeddings``, or a Chroma embedding function (``fn(texts) -> vectors``)."""

DEFAULT_EMBEDDINGS = "minilm"
DEFAULT_RELEVANCE_FLOOR = 0.3
"""The ICL relevance floor for embeddings that do not declare one (a rule of thumb for normalised
sentence embeddings; set ``icl_min_similarity`` after checking your model: docs/RETRIEVAL.md)."""

__all__ = [
    "DEFAULT_EMBEDDINGS",
    "ChromaEmbeddingFunctionAdapter",
    "EmbeddingsLike",
    "HashingEmbeddings",
    "MiniLMEmbeddings",
    "embeddings_name",
    "relevance_floor",
    "resolve_embeddings",
]


class ChromaEmbeddingFunctionAdapter(Embeddings):
    """Lets a Chroma embedding function (``fn(texts) -> vectors``) serve as LangChain ``Embeddings``."""

    def __init__(self, function: Callable[[list[str]], Any]) -> None:
        self.function = function

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in vector] for vector in self.function(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def resolve_embeddings(embeddings: EmbeddingsLike | None) -> Embeddings:
    """LangChain ``Embeddings`` from a name, an object or a Chroma function (``None``: the default).

    Names: ``"minilm"`` (also its full name ``"minilm-l6-v2-int8"``), ``"hashing"`` or
    ``"hashing-DIMENSIONS"``.

    Raises:
        ConfigError: an unknown name, or something that is not embeddings.
    """
    if embeddings is None:
        embeddings = DEFAULT_EMBEDDINGS
    if isinstance(embeddings, str):
        name = embeddings.strip().casefold()
        if name in {"minilm", MiniLMEmbeddings.name}:
            return MiniLMEmbeddings()
        if name == "hashing":
            return HashingEmbeddings()
        prefix, _, size = name.partition("-")
        if prefix == "hashing" and size.isdigit() and int(size) >= 16:
            return HashingEmbeddings(int(size))
        raise ConfigError(
            f"unknown embeddings {embeddings!r}: use 'minilm', 'hashing' or an Embeddings object"
        )
    if isinstance(embeddings, Embeddings):
        return embeddings
    if callable(embeddings):
        return ChromaEmbeddingFunctionAdapter(embeddings)
    raise ConfigError(
        f"embeddings must be a name ('minilm', 'hashing'), LangChain Embeddings or a Chroma embedding "
        f"function, got {type(embeddings).__name__}"
    )


def embeddings_name(embeddings: Embeddings) -> str:
    """A short identity of ``embeddings`` for artifacts and memory collections: our own
    embeddings' ``name``, else the class and its model (e.g. ``OpenAIEmbeddings:text-embedding-3-small``)."""
    name = getattr(embeddings, "name", None)
    if isinstance(name, str) and name:
        return name
    source: object = (
        embeddings.function if isinstance(embeddings, ChromaEmbeddingFunctionAdapter) else embeddings
    )
    model = getattr(source, "model", None) or getattr(source, "model_name", None)
    kind = type(source).__name__
    return f"{kind}:{model}" if isinstance(model, str) and model else kind


def relevance_floor(embeddings: Embeddings) -> float:
    """The cosine similarity an ICL example needs to be placed in context with ``embeddings``."""
    floor = getattr(embeddings, "relevance_floor", None)
    return float(floor) if isinstance(floor, int | float) else DEFAULT_RELEVANCE_FLOOR
