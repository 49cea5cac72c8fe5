from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests must never reach LangSmith (an unreachable endpoint stalls process exit).
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official DRPO data (Apache-2.0), kept beside the repo in ../shared/reference."""
    configured = os.environ.get("DRPO_REFERENCE_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "reference" / "drpo-official"
    if not path.is_dir():
        pytest.skip(f"reference DRPO data not found at {path} (set DRPO_REFERENCE_DIR)")
    return path


from .servers import chroma_server, postgres_url  # noqa: E402, F401  (shared server fixtures)


@pytest.fixture(autouse=True)
def _fresh_model_mismatch_warnings() -> None:
    """The model-mismatch warning is shown once per process and pair; each test starts unwarned."""
    from drpo_agents.aligned import _warned

    _warned.clear()
