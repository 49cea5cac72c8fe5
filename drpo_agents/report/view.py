"""What the report's sections need from an artifact, computed once."""

from __future__ import annotations

from dataclasses import dataclass, field

from drpo_agents.artifact import AlignmentArtifact, CandidateRecord
from drpo_agents.report.draw import natural_key


@dataclass
class View:
    artifact: AlignmentArtifact
    by_id: dict[str, CandidateRecord]
    index: dict[str, int]
    children: dict[str, list[str]]
    roots: list[str]
    node_reward: dict[str, float | None]
    failed: set[str]
    best_path: list[str]
    beam_members: set[str]
    final_beam: set[str]
    best_per_level: list[tuple[int, str]]
    level_points: list[tuple[int, str, float]] = field(default_factory=list)

    @classmethod
    def of(cls, artifact: AlignmentArtifact) -> View:
        by_id = {c.id: c for c in artifact.candidates}
        index = {c.id: i for i, c in enumerate(artifact.candidates)}
        children: dict[str, list[str]] = {}
        roots: list[str] = []
        for cand in artifact.candidates:
            if cand.parent_id is not None and cand.parent_id in by_id and cand.parent_id != cand.id:
                children.setdefault(cand.parent_id, []).append(cand.id)
            else:
                roots.append(cand.id)
        for kids in children.values():
            kids.sort(key=natural_key)
        roots.sort(key=natural_key)

        scored: dict[tuple[str, int], list[float]] = {}
        errored: set[str] = set()
        for record in artifact.evaluations:
            if record.reward is not None:
                scored.setdefault((record.candidate_id, record.level), []).append(record.reward)
            elif record.error:
                errored.add(record.candidate_id)
        node_reward: dict[str, float | None] = {}
        for cand in artifact.candidates:
            own = scored.get((cand.id, cand.level))
            if own:
                node_reward[cand.id] = sum(own) / len(own)
            elif 0 <= cand.level < len(cand.rewards):
                node_reward[cand.id] = cand.rewards[cand.level]
            else:
                node_reward[cand.id] = None
        failed = {cid for cid in errored if node_reward.get(cid) is None}
        level_points = sorted(
            (level, cid, sum(values) / len(values)) for (cid, level), values in scored.items()
        )

        best_path: list[str] = []
        cursor = artifact.best_candidate_id
        while cursor is not None and cursor in by_id and cursor not in best_path:
            best_path.append(cursor)
            cursor = by_id[cursor].parent_id
        best_path.reverse()

        beam_members = {cid for level in artifact.levels for cid in level.beam}
        final_beam = set(artifact.levels[-1].beam) if artifact.levels else set()
        best_per_level = [(lv.level, lv.beam[0]) for lv in artifact.levels if lv.beam and lv.beam[0] in by_id]
        return cls(
            artifact=artifact,
            by_id=by_id,
            index=index,
            children=children,
            roots=roots,
            node_reward=node_reward,
            failed=failed,
            best_path=best_path,
            beam_members=beam_members,
            final_beam=final_beam,
            best_per_level=best_per_level,
            level_points=level_points,
        )
