"""notebooks/quickstart.ipynb executes offline, top to bottom, in a real Jupyter kernel."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


def output_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts.append(data.get("text/markdown", "") + data.get("text/html", ""))
    return "".join(p if isinstance(p, str) else "".join(p) for p in parts)


@pytest.mark.slow
def test_quickstart_notebook_executes_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat", reason="dev extra: pip install -e '.[dev]'")
    nbclient = pytest.importorskip("nbclient", reason="dev extra: pip install -e '.[dev]'")
    pytest.importorskip("ipykernel", reason="dev extra: pip install -e '.[dev]'")
    from jupyter_client.manager import KernelManager

    # A kernel spec for exactly this interpreter (so the kernel imports this checkout's
    # drpo_agents whatever `python` is on PATH), talking over Unix sockets, not TCP.
    spec = tmp_path / "jupyter" / "kernels" / "drpo-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "drpo-agents tests",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copy(NOTEBOOK, workdir / NOTEBOOK.name)

    notebook = nbformat.read(workdir / NOTEBOOK.name, as_version=4)
    manager = KernelManager(kernel_name="drpo-test", transport="ipc", ip=str(tmp_path / "ipc"))
    client = nbclient.NotebookClient(
        notebook,
        km=manager,
        timeout=120,
        startup_timeout=60,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, if any cell fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code)
    everything = "\n".join(output_text(cell) for cell in code)
    assert "SIMULATION" in everything
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart"' in everything  # the reward curve
    assert "ALIGNED" in everything and "| drpo |" in everything and "win rate" in everything
    assert "level 0: -" in everything and "length-normalised:" in everything  # the gate's decisions
    run_dir = workdir / "runs" / "quickstart"
    for name in ("artifact.json", "evaluation.json", "report.html", "checkpoints.sqlite"):
        assert (run_dir / name).is_file(), name
    assert 'id="evaluation"' in (run_dir / "report.html").read_text(encoding="utf-8")
