"""Retrieving the k most similar ICL examples for a query, with an embedding that works offline."""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.embeddings import Embeddings

from drpo_agents.prompts import approx_tokens
from drpo_agents.schemas import ICLExample
from drpo_agents.vectors import VectorTable

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOPWORDS = frozenset(
    """a an the and or but if of to in on for with at by from as is are was were be been being it its
    this that these those i you he she we they me my your our their what which who how why when where can could would should do does did please tell give some any about into""".split()  # noqa: SIM905
)


@functools.lru_cache(maxsize=1024)  # about 8 kB a vector: at most ~8 MB
def _hashed_vector(text: str, dimensions: int) -> tuple[float, ...]:
    """:class:`HashingEmbeddings`' vector of ``text``. Cached: a search embeds the same queries
    (ICL retrieval, recall) many times. Computed sparsely (a text touches a few dozen of the dimensions); the
    norm sums the touched dimensions in index order, the same floats a dense sum adds."""
    words = [w for w in _TOKEN.findall(text.casefold()) if w not in _STOPWORDS]
    features = Counter(words + [f"{a} {b}" for a, b in itertools.pairwise(words)])
    touched: dict[int, float] = {}
    for feature, count in features.items():
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        sign = 1.0 if digest[4] & 1 else -1.0
        touched[index] = touched.get(index, 0.0) + sign * (1.0 + math.log(count))
    order = sorted(touched)
    norm = math.sqrt(sum(touched[i] * touched[i] for i in order)) or 1.0
    vector = [0.0] * dimensions
    for index in order:
        vector[index] = touched[index] / norm
    return tuple(vector)


class HashingEmbeddings(Embeddings):
    """Deterministic bag-of-words embeddings: hashed word unigrams and bigrams, L2-normalised.

    Lexical, not semantic, but honest, instant and fully offline: the default so nothing
    downloads a model. Pass any LangChain ``Embeddings`` for semantic retrieval.
    """

    def __init__(self, dimensions: int = 1024) -> None:
        if dimensions < 16:
            raise ValueError("dimensions must be at least 16")
        self.dimensions = dimensions

    def _embed(self, text: str) -> list[float]:
        return list(_hashed_vector(text, self.dimensions))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


class ChromaEmbeddingFunctionAdapter(Embeddings):
    """Lets a Chroma embedding function (``fn(texts) -> vectors``) serve as LangChain ``Embeddings``."""

    def __init__(self, function: Callable[[list[str]], Any]) -> None:
        self.function = function

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in vector] for vector in self.function(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


EmbeddingsLike = Embeddings | Callable[[list[str]], Any]


def as_embeddings(embeddings: EmbeddingsLike | None) -> Embeddings:
    """LangChain ``Embeddings`` from ``embeddings``: itself, an adapted Chroma embedding function,
    or the offline :class:`HashingEmbeddings` when ``None``."""
    if embeddings is None:
        return HashingEmbeddings()
    if isinstance(embeddings, Embeddings):
        return embeddings
    if callable(embeddings):
        return ChromaEmbeddingFunctionAdapter(embeddings)
    raise TypeError(
        f"embeddings must be LangChain Embeddings or a Chroma embedding function, got {embeddings!r}"
    )


@runtime_checkable
class ICLRetriever(Protocol):
    """Anything that returns the k ICL examples most relevant to a query."""

    def retrieve(self, query: str, k: int) -> list[ICLExample]: ...


def fit_icl_budget(examples: Sequence[ICLExample], max_tokens: int | None) -> list[ICLExample]:
    """The examples (in their order of relevance) that fit in ``max_tokens``; an example too large
    for what is left is skipped, so a smaller, less similar one may still fit. ``None``: all."""
    if max_tokens is None:
        return list(examples)
    kept: list[ICLExample] = []
    left = max_tokens
    for example in examples:
        size = approx_tokens(example.query) + approx_tokens(example.answer)
        if size <= left:
            kept.append(example)
            left -= size
    return kept


class InMemoryICLRetriever:
    """Exact cosine-similarity retrieval over a small in-memory set of ICL examples."""

    def __init__(self, examples: Sequence[ICLExample], embeddings: EmbeddingsLike | None = None) -> None:
        self.examples = list(examples)
        self.embeddings = as_embeddings(embeddings)
        self._table = VectorTable()
        if self.examples:
            self._table.add(
                self.embeddings.embed_documents([e.query for e in self.examples]),
                list(range(len(self.examples))),
            )

    def retrieve(self, query: str, k: int) -> list[ICLExample]:
        """The ``k`` examples whose queries are most similar to ``query``, most similar first
        (ties by the examples' order, so retrieval is deterministic)."""
        if k <= 0 or not self.examples:
            return []
        rows = self._table.rank(self.embeddings.embed_query(query), limit=k)
        return [self.examples[row] for row in rows]
