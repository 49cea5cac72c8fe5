"""Import the search traces published with the official DRPO implementation as artifacts.

A trace file (``optimized-prompts/MODEL.json`` in the official repository) maps ``"level i"``
to ``{"Prompt": str, "Evaluation of the prompt": {aspect: {"rationale", "score"}}}``. By the
official convention the last level holds the best prompt. Every level becomes a candidate
whose parent is the previous level, with its evaluation recorded; the queries and answers
behind those evaluations are not in the file, so they are recorded as empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from drpo_agents.artifact import AlignmentArtifact, CandidateRecord, EvaluationRecord, LevelRecord
from drpo_agents.errors import ArtifactError, ConfigError
from drpo_agents.icl_sets import load_icl_examples, load_seed_icl_examples
from drpo_agents.infra.json_files import read_json
from drpo_agents.json_types import JsonObject
from drpo_agents.schemas import AnswerEvaluation, ICLExample

OFFICIAL_SOURCE = "drpo-official-import"
_LEVEL_KEY = re.compile(r"^\s*level\s*(\d+)\s*$", re.IGNORECASE)


def _read_trace(source: Path) -> JsonObject:
    data = read_json(source, "official DRPO trace", ArtifactError)
    if not isinstance(data, dict) or not data:
        raise ArtifactError(f'{source}: expected a JSON object of {{"level i": {{...}}}} entries')
    return data


def _levels(data: JsonObject, source: Path) -> list[tuple[int, str, AnswerEvaluation]]:
    """(official level number, prompt, evaluation), sorted numerically (level 10 after level 9)."""
    levels: list[tuple[int, str, AnswerEvaluation]] = []
    for key, entry in data.items():
        match = _LEVEL_KEY.match(key)
        if match is None:
            raise ArtifactError(f"{source}: unexpected key {key!r}; keys must look like 'level 1'")
        if not isinstance(entry, dict):
            raise ArtifactError(
                f"{source}: {key!r} must be an object with 'Prompt' and 'Evaluation of the prompt'"
            )
        prompt = entry.get("Prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ArtifactError(f"{source}: {key!r} has no 'Prompt' text")
        if "Evaluation of the prompt" not in entry:
            raise ArtifactError(f"{source}: {key!r} has no 'Evaluation of the prompt'")
        try:
            evaluation = AnswerEvaluation.model_validate(entry["Evaluation of the prompt"])
        except ValidationError as exc:
            raise ArtifactError(f"{source}: {key!r} has an unreadable evaluation: {exc}") from exc
        levels.append((int(match.group(1)), prompt.strip(), evaluation))
    numbers = [n for n, _, _ in levels]
    if len(set(numbers)) != len(numbers):
        raise ArtifactError(f"{source}: a level number appears twice")
    return sorted(levels, key=lambda level: level[0])


def _examples(icl_examples: str | Path | Sequence[ICLExample] | None) -> list[ICLExample]:
    """The ICL examples to pair with the prompt: a file's, the given ones, or our packaged seed set."""
    if icl_examples is None:
        return load_seed_icl_examples()
    if isinstance(icl_examples, str | Path):
        return load_icl_examples(icl_examples)
    return list(icl_examples)


def _search_records(
    levels: Sequence[tuple[int, str, AnswerEvaluation]],
) -> tuple[list[CandidateRecord], list[EvaluationRecord], list[LevelRecord]]:
    """One candidate per level (parent = the previous level), with its evaluation and level row."""
    candidates: list[CandidateRecord] = []
    evaluations: list[EvaluationRecord] = []
    records: list[LevelRecord] = []
    rewards: list[float] = []
    parent: str | None = None
    for index, (number, prompt, evaluation) in enumerate(levels):
        candidate_id = f"level{number}"
        rewards = [*rewards, evaluation.reward]
        candidates.append(
            CandidateRecord(
                id=candidate_id, parent_id=parent, prompt=prompt, level=index, rewards=rewards, carried=False
            )
        )
        evaluations.append(
            EvaluationRecord(
                candidate_id=candidate_id,
                level=index,
                query_id="",
                query="",  # not in the official file
                aspects=[s.aspect for s in evaluation.scores],
                scores=list(evaluation.scores),
                reward=evaluation.reward,
            )
        )
        records.append(
            LevelRecord(
                level=index,
                query_ids=[],
                beam=[candidate_id],
                beam_mean_rewards=[sum(rewards) / len(rewards)],
                level_rewards=[evaluation.reward],
                depth_limit=len(levels) - 1,
            )
        )
        parent = candidate_id
    return candidates, evaluations, records


def load_official_trace(
    path: str | Path,
    *,
    model_name: str | None = None,
    icl_examples: str | Path | Sequence[ICLExample] | None = None,
    icl_k: int = 2,
) -> AlignmentArtifact:
    """Read an official DRPO search trace into an :class:`AlignmentArtifact`.

    The artifact's prompt is the last level's (the official convention for the best prompt);
    every level is kept as a candidate (parent = the previous level, reward history = the
    rewards so far) with its evaluation, so ``reward_curve()`` and the search tree work as for
    our own runs. Official level ``i`` becomes our level ``i - 1`` (level 1 is the initial prompt).

    Args:
        path: a trace file such as ``optimized-prompts/mistral-7b-instruct-v0.1.json``.
        model_name: the model the trace was optimised for (default: the file name without ``.json``).
        icl_examples: an ICL example file (see :func:`drpo_agents.icl_sets.load_icl_examples`, e.g. the
            official ``ICL_examples.json``) or examples; default: our packaged seed examples.
        icl_k: ICL examples to retrieve per query when the artifact is applied.

    Raises:
        ArtifactError: if the trace is missing, unreadable, or not in the official format.
        ConfigError: if the ICL example file is invalid.
    """
    source = Path(path)
    levels = _levels(_read_trace(source), source)
    name = model_name or source.stem
    examples = _examples(icl_examples)
    if icl_k < 0:
        raise ConfigError("icl_k must be >= 0")

    candidates, evaluations, records = _search_records(levels)
    return AlignmentArtifact(
        run_id=f"official-{name}",
        source=OFFICIAL_SOURCE,
        system_prompt=levels[-1][1],
        icl_examples=examples,
        icl_k=icl_k,
        best_candidate_id=candidates[-1].id,
        candidates=candidates,
        evaluations=evaluations,
        levels=records,
        models={"responder": name},
        notes=[
            f"Imported from the official DRPO search trace {source.name} ({len(levels)} levels); the last "
            "level is the best prompt by the official convention. The trace does not record the queries "
            "or answers behind each evaluation.",
        ],
    )
