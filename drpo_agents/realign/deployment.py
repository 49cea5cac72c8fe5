"""A deployment folder: the versioned artifacts, the ``current.json`` pointer an app loads, and the
history of realignment rounds.

Layout::

    DEPLOY_DIR/
      current.json -> versions/v0002.json    the deployed artifact (a symlink, switched atomically)
      versions/v0000.json, v0002.json, ...   every artifact ever deployed, never rewritten
      history.jsonl                          one line per round: inputs, scores, decision
      rounds/r0001/, r0002/, ...             each round's run folder (search, evaluation)
      memory/                                the critique memory every round shares
      realign.sqlite                         the checkpoints of the realignment graph

Every write is atomic (a temporary file renamed over the target): a process killed at any
instant leaves ``current.json`` pointing at the old version or the new one, never at nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.config import DEFAULT_INITIAL_PROMPT
from drpo_agents.datasets import Query
from drpo_agents.errors import ArtifactError
from drpo_agents.icl_sets import seed_icl_examples_for
from drpo_agents.infra.json_files import save_json_atomically
from drpo_agents.infra.run_files import CURRENT_FILE

VERSIONS_DIR = "versions"
ROUNDS_DIR = "rounds"
HISTORY_FILE = "history.jsonl"
CHECKPOINT_DB = "realign.sqlite"

Decision = Literal["promoted", "kept", "skipped"]


class RoundRecord(BaseModel):
    """One line of ``history.jsonl``: what a round started from, what it measured and decided."""

    round: int
    decision: Decision
    reason: str
    deployed_before: str = Field(..., description="The version deployed when the round started.")
    deployed_after: str = Field(..., description="The version deployed when it ended.")
    query_files: list[str] = Field(default_factory=list, description="The files its new queries came from.")
    train_queries: list[str] = Field(default_factory=list, description="Ids of the queries it optimized on.")
    held_out_queries: list[str] = Field(
        default_factory=list, description="Ids of the queries it was gated on."
    )
    query_keys: list[str] = Field(
        default_factory=list, description="Keys of every query it used (query_key): none is used twice."
    )
    candidate_mean: float | None = None
    deployed_mean: float | None = None
    gain: list[float | None] | None = Field(None, description="Gain over deployed: [mean, low, high].")
    run_dir: str | None = None


class Deployment:
    """The files of one deployment folder (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def pointer(self) -> Path:
        """``current.json``: the deployed artifact, as an app loads it."""
        return self.root / CURRENT_FILE

    def version_path(self, version: str) -> Path:
        """Where ``version`` (e.g. ``v0002``) is kept."""
        return self.root / VERSIONS_DIR / f"{version}.json"

    def round_dir(self, number: int) -> Path:
        """Round ``number``'s run folder."""
        return self.root / ROUNDS_DIR / f"r{number:04d}"

    def current_version(self) -> str | None:
        """The deployed version's name, or None before anything is deployed.

        Raises:
            ArtifactError: ``current.json`` is not a link into ``versions/``.
        """
        if not self.pointer.is_symlink():
            if self.pointer.exists():
                raise ArtifactError(f"{self.pointer} is not a link to a version: not a deployment folder")
            return None
        target = Path(os.readlink(self.pointer))
        if target.parent.name != VERSIONS_DIR or target.suffix != ".json":
            raise ArtifactError(f"{self.pointer} points outside {VERSIONS_DIR}/: {target}")
        return target.stem

    def deploy_first(self, artifact: AlignmentArtifact | None, queries: Sequence[Query] = ()) -> str:
        """Deploy ``artifact`` (default: the plain initial prompt with the packaged seed ICL
        examples a run on ``queries`` starts from) as ``v0000`` when nothing is deployed yet; the
        deployed version either way."""
        current = self.current_version()
        if current is not None:
            return current
        initial = artifact or AlignmentArtifact(
            run_id="initial",
            system_prompt=DEFAULT_INITIAL_PROMPT,
            icl_examples=seed_icl_examples_for(queries),
        )
        self.promote(initial, "v0000")
        return "v0000"

    def promote(self, artifact: AlignmentArtifact, version: str) -> None:
        """Keep ``artifact`` as ``version`` and point ``current.json`` at it, each step atomic and
        idempotent: run again after a kill, it completes what the kill interrupted."""
        path = self.version_path(version)
        if not path.is_file() or AlignmentArtifact.load(path) != artifact:
            save_json_atomically(artifact, path)
        _fsync_dir(path.parent)
        link = self.pointer.with_name(f".{CURRENT_FILE}.{os.getpid()}.tmp")
        link.unlink(missing_ok=True)
        os.symlink(Path(VERSIONS_DIR) / path.name, link)  # relative: the folder can be moved
        os.replace(link, self.pointer)  # rename(2) is atomic: old link or new, never none
        _fsync_dir(self.root)

    def history(self) -> list[RoundRecord]:
        """Every recorded round, oldest first (a line cut short by a kill is ignored)."""
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        records: list[RoundRecord] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(RoundRecord.model_validate_json(line))
            except ValueError:
                continue  # the tail of a write cut short; the round is recorded again when it reruns
        return records

    def record(self, entry: RoundRecord) -> None:
        """Append ``entry`` to the history, once per round."""
        if any(r.round == entry.round for r in self.history()):
            return
        path = self.root / HISTORY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # drop a line cut short by a kill
        line = entry.model_dump_json() + "\n"
        tmp = path.with_name(f".{HISTORY_FILE}.tmp")
        tmp.write_text(text + line, encoding="utf-8")
        os.replace(tmp, path)

    def next_round(self) -> int:
        """The number of the round to run next."""
        return max((r.round for r in self.history()), default=0) + 1

    def used_query_keys(self) -> set[str]:
        """The keys of every query an earlier round used (each query is used once)."""
        return {key for entry in self.history() for key in entry.query_keys}


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut after it keeps it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
