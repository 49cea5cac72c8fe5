"""Warm start: a new run that starts from an earlier result's prompt and ICL examples.

Re-aligning after a model upgrade, or building on a published DRPO prompt, starts here: the
earlier system prompt becomes the search's initial candidate (``c0``), its ICL examples the seed
set, and the new artifact names its parent (run id, source, content hash, model).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from drpo_agents.artifact import AlignmentArtifact, ArtifactSource, ParentRecord, load_artifact
from drpo_agents.config import DEFAULT_INITIAL_PROMPT, DRPOConfig, as_config
from drpo_agents.errors import ConfigError
from drpo_agents.schemas import ICLExample


@dataclass(frozen=True)
class StartingPoint:
    """What a warm-started run begins with."""

    prompt: str
    icl_examples: list[ICLExample]
    parent: ParentRecord


def artifact_sha256(artifact: AlignmentArtifact) -> str:
    """sha256 of ``artifact``'s canonical JSON (sorted keys, no spaces), ``created_at`` left out: the
    same content gives the same hash whether it is held as an object, a file or a run folder, and
    whenever it was made."""
    content = artifact.model_dump(mode="json", exclude={"created_at"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def starting_point(source: ArtifactSource) -> StartingPoint:
    """The prompt, ICL examples and parent record of the earlier result ``source`` (an artifact,
    ``artifact.json``, a run folder, an artifact dict, or an imported published prompt).

    Raises:
        ArtifactError: ``source`` is not a readable artifact.
    """
    artifact = load_artifact(source)
    return StartingPoint(
        prompt=artifact.system_prompt,
        icl_examples=list(artifact.icl_examples),
        parent=ParentRecord(
            run_id=artifact.run_id,
            source=artifact.source,
            artifact_sha256=artifact_sha256(artifact),
            responder=artifact.models.get("responder", ""),
        ),
    )


def warm_started(
    config: DRPOConfig, icl_examples: Sequence[ICLExample] | None, point: StartingPoint
) -> tuple[DRPOConfig, list[ICLExample]]:
    """``config`` with the earlier prompt as its initial prompt, and the seed ICL examples: the ones
    given, else the earlier result's.

    Raises:
        ConfigError: ``config`` sets another initial prompt (the two ways to say where the search
            starts disagree).
    """
    if config.initial_prompt not in (DEFAULT_INITIAL_PROMPT, point.prompt):
        raise ConfigError(
            "a warm start sets the initial prompt to the earlier result's; leave initial_prompt unset "
            "or drop the start point"
        )
    examples = list(icl_examples) if icl_examples is not None else point.icl_examples
    return as_config({**config.to_json_dict(), "initial_prompt": point.prompt}), examples
