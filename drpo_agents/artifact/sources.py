"""An :class:`AlignmentArtifact` from whatever form a user holds it in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import ValidationError

from drpo_agents.artifact.result import AlignmentArtifact
from drpo_agents.errors import ArtifactError
from drpo_agents.infra.run_files import ARTIFACT_FILE, CURRENT_FILE, artifact_path

ArtifactSource: TypeAlias = AlignmentArtifact | str | Path | Mapping[str, Any]
"""An artifact, a path to ``artifact.json`` or to a run folder, an artifact dict, or the output of
the DRPO graph (``{"artifact": {...}, ...}``)."""


def load_artifact(source: ArtifactSource) -> AlignmentArtifact:
    """The artifact ``source`` holds.

    Raises:
        ArtifactError: a missing or unreadable file, a folder without ``artifact.json``, a dict
            that is not an artifact, or any other type; one line saying which.
    """
    if isinstance(source, AlignmentArtifact):
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir() and not artifact_path(path).is_file():
            raise ArtifactError(
                f"{path} is a folder without {ARTIFACT_FILE} or {CURRENT_FILE}: not a finished run "
                "folder or a deployment folder"
            )
        return AlignmentArtifact.load(artifact_path(path))
    if isinstance(source, Mapping):
        data = source.get("artifact") if isinstance(source.get("artifact"), Mapping) else source
        try:
            return AlignmentArtifact.model_validate(data)
        except ValidationError as exc:
            missing = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"]
            detail = f"missing {', '.join(missing)}" if missing else str(exc.errors()[0]["msg"])
            raise ArtifactError(f"this dict is not a drpo-agents artifact ({detail})") from exc
    raise ArtifactError(
        "an artifact must be an AlignmentArtifact, a path to artifact.json or a run folder, an artifact "
        f"dict or the DRPO graph's output; got {type(source).__name__}"
    )
