"""The files of a run directory: their names, and the paths every module builds from them.

=====================  ================================================================
``config.json``        run id, every ``DRPOConfig`` field, model identities, memory location
``cli.json``           how ``drpo optimize`` built the models (no secrets), for ``drpo resume``
``checkpoints.sqlite`` LangGraph checkpoints, thread id = run id (unless a PostgreSQL URL is used)
``llm_cache.sqlite``   LLM response cache (what ``config.cache`` selects)
``responses.sqlite``   the response journal: every finished model call, replayed on resume
``trace.jsonl``        the JSON-lines trace (``drpo optimize``, or a :class:`JsonlTracer` you add)
``artifact.json``      the result
``report.html``        the HTML report (``drpo optimize``, ``drpo report``)
``evaluation.json``    a held-out evaluation (``drpo evaluate``), with ``evaluation.md``
                       and ``evaluation_responses.sqlite``, its response journal
=====================  ================================================================
"""

from __future__ import annotations

from pathlib import Path

ARTIFACT_FILE = "artifact.json"
CONFIG_FILE = "config.json"
CLI_FILE = "cli.json"
CHECKPOINT_FILE = "checkpoints.sqlite"
CACHE_FILE = "llm_cache.sqlite"
JOURNAL_FILE = "responses.sqlite"
TRACE_FILE = "trace.jsonl"
REPORT_FILE = "report.html"
EVALUATION_FILE = "evaluation.json"
EVALUATION_MARKDOWN_FILE = "evaluation.md"
EVALUATION_JOURNAL_FILE = "evaluation_responses.sqlite"
CURRENT_FILE = "current.json"
"""A deployment folder's pointer to its deployed artifact (:mod:`drpo_agents.realign.deployment`)."""
MEMORY_DIR = "memory"
"""The critique memory the CLI's runs share, beside their run directories (``runs/memory``)."""


PRIVATE_FOLDER_MODE = 0o700


def private_folder(path: str | Path) -> Path:
    """``path`` as a folder, made owner-only (0700) when this call creates it, whatever the umask:
    a run, memory or deployment folder holds every query, answer and critique. A folder that
    exists keeps its mode (a team's shared folder stays shared); missing parents get the usual
    mode."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    try:
        folder.mkdir(mode=PRIVATE_FOLDER_MODE)
    except FileNotFoundError:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return private_folder(folder)
    except FileExistsError:  # made meanwhile by another process: its mode stands
        return folder
    folder.chmod(PRIVATE_FOLDER_MODE)  # mkdir's mode is masked by the umask; this is not
    return folder


def artifact_path(run: Path) -> Path:
    """The artifact file of ``run``: a run directory's ``artifact.json``, a deployment folder's
    ``current.json``, or ``run`` itself if it is a file."""
    if not run.is_dir():
        return run
    deployed = run / CURRENT_FILE
    return deployed if deployed.exists() and not (run / ARTIFACT_FILE).exists() else run / ARTIFACT_FILE


def run_folder(run: Path) -> Path:
    """The folder of ``run``: the run directory itself, or the folder holding an artifact file."""
    return run if run.is_dir() else run.parent
