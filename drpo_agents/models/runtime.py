"""Health-checking the embedded llama.cpp runtime of ``local:`` models: the probe.

Why: llama.cpp compiled with its default ``GGML_NATIVE=ON`` uses every instruction its build
host advertises; on a CPU with AVX-512/AMX such a build died with SIGILL ("Illegal
instruction", exit 132, nothing printed) in decode. So the first time a runtime and a model file
are used on a machine, :func:`check_runtime` runs a child process that loads the GGUF and
decodes a prompt of a few hundred tokens. A native crash kills the child, not the run, and
becomes one clear :class:`LocalModelError`; a passing probe is cached per runtime, model file
and CPU, so later runs cost nothing. Building a portable runtime is
:mod:`drpo_agents.models.runtime_install`.

The module never imports ``llama_cpp`` itself: the probe's child does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

from drpo_agents.errors import LocalModelError
from drpo_agents.json_types import JsonObject

INSTALL_COMMAND = "drpo install-local"  # builds llama.cpp portably: drpo_agents.models.runtime_install
REBUILD_COMMAND = f"{INSTALL_COMMAND} --force"
SKIP_PROBE_ENV = "DRPO_SKIP_RUNTIME_PROBE"
PROBE_TIMEOUT_S = 120.0  # a 135M model needs ~2 s; a big GGUF on a busy machine much longer
_LOAD_FAILED = 3  # the probe's exit code when llama.cpp refuses the file (not a crash)

# The probe's child: load the model, then decode ~300 prompt tokens and a few new ones (the
# native crash showed only on prompts longer than a few tokens). It prints "loaded" in between,
# so a crash can be told apart: while loading (a bad file) or while decoding (a bad build).
PROBE_CODE = """
import sys
import llama_cpp
path, threads = sys.argv[1], int(sys.argv[2])
try:
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=threads, verbose=False)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
print("loaded", flush=True)
text = " ".join(f"Item {i}: the quick brown fox jumps over the lazy dog." for i in range(20))
usage = llm.create_completion(text, max_tokens=4, temperature=0.0)["usage"]
print("ok", usage["prompt_tokens"], usage["completion_tokens"], flush=True)
"""


def cache_dir() -> Path:
    """drpo-agents' per-user cache: ``DRPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/drpo-agents``,
    else ``~/.cache/drpo-agents``."""
    configured = os.environ.get("DRPO_CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "drpo-agents"


def runtime_fingerprint() -> JsonObject | None:
    """What identifies the installed llama.cpp runtime, found without importing it (``None`` when
    llama-cpp-python is not installed): its version and the path, size and mtime of each shared
    library, so that any rebuild or reinstall is a new runtime."""
    importlib.invalidate_caches()  # pip may have just (re)installed it
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        spec = None
    libraries: list[list[Any]] = []
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(folder) / "lib"
        for path in sorted(lib.iterdir()) if lib.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                libraries.append([str(path), stat.st_size, stat.st_mtime_ns])
    return {"version": version, "libraries": libraries}


@cache
def _cpu_fingerprint() -> str:
    """The CPU's instruction-set flags: a home directory shared by machines with other CPUs must
    not reuse another CPU's passing probe."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return hashlib.sha256(line.encode("utf-8")).hexdigest()[:16]
    except OSError:
        pass
    return f"{platform.machine()}:{platform.processor()}"


def digest(material: Any) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def write_json(path: Path, data: JsonObject) -> None:
    """Best effort: an unwritable cache only means the check runs again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------

_passed: set[str] = set()  # probes passed in this process: no file access after the first
_probe_lock = threading.Lock()  # concurrent first calls (worker threads) run one probe


def probe_command(model_path: Path, n_threads: int) -> list[str]:
    """The child process that runs the probe (:data:`PROBE_CODE`)."""
    return [sys.executable, "-c", PROBE_CODE, str(model_path), str(n_threads)]


def check_runtime(model_path: Path, n_threads: int | None = None) -> None:
    """Make sure llama.cpp can load ``model_path`` and decode with it on this machine.

    The first time for a runtime (:func:`runtime_fingerprint`), model file and CPU, a child
    process loads the model and decodes a few hundred tokens; its success is cached under
    :func:`cache_dir`. ``DRPO_SKIP_RUNTIME_PROBE=1`` skips the check.

    Raises:
        LocalModelError: one line naming the cause: a crash (e.g. SIGILL: built for another
            CPU) with the rebuild command, a file llama.cpp cannot load, or a timeout.
    """
    if os.environ.get(SKIP_PROBE_ENV, "").strip() == "1":
        return
    try:
        stat = model_path.stat()
    except OSError as exc:
        raise LocalModelError(f"cannot read the model file {model_path}: {exc}") from exc
    key = digest(
        {
            "runtime": runtime_fingerprint(),
            "model": [str(model_path), stat.st_size, stat.st_mtime_ns],
            "cpu": _cpu_fingerprint(),
            "python": sys.executable,
        }
    )
    with _probe_lock:
        if key in _passed:
            return
        record = cache_dir() / "runtime-probes" / f"{key}.json"
        if not record.is_file():
            threads = n_threads or default_threads()
            started = time.perf_counter()
            _run_probe(model_path, threads)
            write_json(
                record,
                {
                    "model": str(model_path),
                    "threads": threads,
                    "seconds": round(time.perf_counter() - started, 2),
                    "passed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )
        _passed.add(key)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _run_probe(model_path: Path, n_threads: int) -> None:
    try:
        result = subprocess.run(
            probe_command(model_path, n_threads),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LocalModelError(
            f"the llama.cpp runtime check (load {model_path.name}, decode a few hundred tokens) did not "
            f"finish in {PROBE_TIMEOUT_S:g} s: the machine may be overloaded or the runtime broken; "
            f"rebuild it with: {REBUILD_COMMAND} (or set {SKIP_PROBE_ENV}=1 to skip the check)"
        ) from None
    except OSError as exc:
        raise LocalModelError(f"cannot start the llama.cpp runtime check: {exc}") from exc
    loaded = "loaded" in result.stdout.split()
    if result.returncode < 0:
        raise LocalModelError(_crash_message(-result.returncode, loaded, model_path))
    if result.returncode == _LOAD_FAILED:
        raise LocalModelError(
            f"cannot load {model_path} with llama.cpp ({last_line(result.stderr)}): "
            "is it a complete GGUF model file?"
        )
    if result.returncode != 0 or "ok" not in result.stdout.split():
        raise LocalModelError(
            f"the llama.cpp runtime check failed (exit {result.returncode}: {last_line(result.stderr)}); "
            f"rebuild the runtime with: {REBUILD_COMMAND}"
        )


def _crash_message(number: int, loaded: bool, model_path: Path) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    if number == signal.SIGILL:
        return (
            f"llama.cpp crashed with SIGILL (illegal instruction) running {model_path.name}: it was "
            "compiled for a different CPU than this one (a native build from another machine, or "
            f"pip's cached wheel); rebuild it portably with: {REBUILD_COMMAND}"
        )
    if number == getattr(signal, "SIGKILL", -1):
        return (
            f"the llama.cpp runtime check was killed (SIGKILL) running {model_path.name}: "
            "out of memory for this model?"
        )
    if not loaded:
        return (
            f"llama.cpp crashed with {name} while loading {model_path}: the file may be corrupt or not "
            f"a model llama.cpp supports; if other GGUF files crash too, rebuild it with: {REBUILD_COMMAND}"
        )
    return (
        f"llama.cpp crashed with {name} while decoding with {model_path.name}: the runtime is broken "
        f"on this machine; rebuild it with: {REBUILD_COMMAND}"
    )


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def env_count(name: str) -> int | None:
    configured = os.environ.get(name, "").strip()
    if not configured:
        return None
    try:
        return max(1, int(configured))
    except ValueError:
        raise LocalModelError(f"{name} must be a number, got {configured!r}") from None


def default_threads() -> int:
    """Threads for llama.cpp: ``DRPO_LOCAL_THREADS``, else half the CPUs this process may use (1-8).

    Half, like llama.cpp's own default: its threads spin while they wait for each other, so on a
    busy machine a thread per logical CPU can be many times slower than fewer threads.
    """
    configured = env_count("DRPO_LOCAL_THREADS")
    return configured if configured is not None else max(1, min(8, usable_cpus() // 2))
