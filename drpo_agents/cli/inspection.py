"""``drpo inspect``'s tables beyond the run summary: failures, conversations, ICL examples,
validation, gate."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.cli.summary import print_table, show_run
from drpo_agents.json_types import JsonObject


def show_inspection(artifact: AlignmentArtifact, run_dir: Path) -> None:
    """``drpo inspect``: the run summary, then failures, conversations, ICL examples, validation
    and gate decisions."""
    show_run(artifact, run_dir, None, False, False)
    _failure_table(artifact)
    if artifact.histories:
        last_turns = {e.query_id: e.query for e in artifact.evaluations}
        print_table(
            f"Conversations ({len(artifact.histories)} of the training queries; earlier turns folded)",
            ("query", "earlier turns", "began with", "last turn"),
            (
                (
                    escape(query_id),
                    str(len(history)),
                    escape(_clip(history[0]["content"])),
                    escape(_clip(last_turns[query_id])) if query_id in last_turns else "(not reached)",
                )
                for query_id, history in sorted(artifact.histories.items())
            ),
        )
    if artifact.icl_examples:
        print_table(
            f"ICL examples ({len(artifact.icl_examples)}; up to {artifact.icl_k} placed per request)",
            ("example", "earlier turns", "query", "answer"),
            (
                (
                    escape(example.id or f"#{number}"),
                    str(len(example.history)) if example.history else "-",
                    escape(_clip(example.query)),
                    escape(_clip(example.answer)),
                )
                for number, example in enumerate(artifact.icl_examples, start=1)
            ),
        )
    if artifact.validation:
        print_table(
            "Validation (held-out training queries)",
            ("candidate", "mean", "std", "failed", "search rank"),
            (
                (
                    row.candidate_id
                    + (" (chosen)" if row.candidate_id == artifact.best_candidate_id else ""),
                    f"{row.mean:.2f}" if row.mean is not None else "-",
                    f"{row.std:.2f}" if row.std is not None else "-",
                    str(row.failed),
                    str(row.search_rank)
                    if row.search_rank is not None
                    else ("initial prompt" if row.candidate_id == "c0" else "-"),
                )
                for row in artifact.validation
            ),
        )
    if artifact.gate_decisions:
        print_table(
            "Acceptance gate (validation gain, bootstrap interval, red-team safety)",
            ("level", "challenger", "incumbent", "gain", "interval", "safety", "decision"),
            (
                (
                    str(d.level),
                    d.challenger_id or "-",
                    d.incumbent_id,
                    f"{d.mean_difference:+.3f}" if d.mean_difference is not None else "-",
                    f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
                    if d.ci_low is not None and d.ci_high is not None
                    else "-",
                    f"{d.incumbent_safety:.2f} -> {d.challenger_safety:.2f}"
                    if d.incumbent_safety is not None and d.challenger_safety is not None
                    else "-",
                    "accepted" if d.accepted else escape(d.reason.split(":")[0]),
                )
                for d in artifact.gate_decisions
            ),
        )


def inspection_summary(artifact: AlignmentArtifact) -> JsonObject:
    """``drpo inspect --json``: the run in numbers and records."""
    return {
        "run_id": artifact.run_id,
        "best_candidate_id": artifact.best_candidate_id,
        "best_prompt": artifact.system_prompt,
        "reward_curve": artifact.reward_curve(),
        "levels": len(artifact.levels),
        "candidates": len(artifact.candidates),
        "failed_evaluations": sum(1 for e in artifact.evaluations if e.error),
        "failures": {role: f.model_dump() for role, f in artifact.failure_counts().items()},
        "failed_levels": artifact.failed_levels(),
        "no_valid_candidate": artifact.no_valid_candidate(),
        "usage": {role: u.model_dump() for role, u in artifact.usage.items()},
        "cost": artifact.cost,
        "length_reward_correlation": artifact.length_reward_correlation(),
        "within_query_length_correlation": artifact.within_query_length_correlation(),
        "validation": [v.model_dump() for v in artifact.validation],
        "gate_decisions": [d.model_dump() for d in artifact.gate_decisions],
        "jury_disagreement": [lvl.jury_disagreement for lvl in artifact.levels],
        "lessons_by_run": artifact.lesson_sources(),
        "conversations": {query_id: len(turns) for query_id, turns in artifact.histories.items()},
        "icl_examples": [
            {"id": e.id, "query": e.query, "earlier_turns": len(e.history)} for e in artifact.icl_examples
        ],
        "parent": artifact.parent.model_dump() if artifact.parent is not None else None,
        "notes": artifact.notes,
    }


def _clip(text: str, width: int = 48) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _failure_table(artifact: AlignmentArtifact) -> None:
    """Failed calls per role, with the first error of each (or one line when nothing failed)."""
    counts = artifact.failure_counts()
    if not any(f.failed or f.rejected for f in counts.values()):
        Console().print("Failed model calls: none")
        return
    print_table(
        "Failed model calls per role",
        ("role", "failed calls", "answered calls", "rejected proposals", "first error"),
        (
            (
                role,
                str(f.failed),
                str(usage.calls) if (usage := artifact.usage.get(role)) else "-",
                str(f.rejected) if role == "rewriter" else "-",
                escape((f.first_error or "-")[:100]),
            )
            for role, f in counts.items()
        ),
    )
