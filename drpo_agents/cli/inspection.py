"""``drpo inspect``'s tables beyond the run summary: failures, conversations, validation, gate."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.cli.summary import print_table, show_run


def show_inspection(artifact: AlignmentArtifact, run_dir: Path) -> None:
    """``drpo inspect``: the run summary, then failures, validation and gate decisions."""
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
                    escape(_clip(last_turns.get(query_id, ""))),
                )
                for query_id, history in sorted(artifact.histories.items())
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
