"""Zero-dependency lexical embeddings: hashed word unigrams and bigrams."""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
from collections import Counter

from langchain_core.embeddings import Embeddings

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

    Lexical, not semantic: texts that share no content word have similarity 0. Instant and free
    of any model (``embeddings="hashing"``); the packaged :class:`MiniLMEmbeddings` are the default.
    """

    relevance_floor = 0.2
    """Cosine similarity below which an ICL example is not relevant (docs/RETRIEVAL.md)."""

    def __init__(self, dimensions: int = 1024) -> None:
        if dimensions < 16:
            raise ValueError("dimensions must be at least 16")
        self.dimensions = dimensions

    @property
    def name(self) -> str:
        """The identity recorded in artifacts and memory collection names."""
        return f"hashing-{self.dimensions}"

    def _embed(self, text: str) -> list[float]:
        return list(_hashed_vector(text, self.dimensions))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    def __repr__(self) -> str:
        return f"HashingEmbeddings(dimensions={self.dimensions})"
