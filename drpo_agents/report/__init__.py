"""A self-contained HTML report of a DRPO run: people would rather look than read.

:func:`write_report` turns an :class:`AlignmentArtifact` (and, optionally, an
:class:`EvaluationReport`) into one HTML file with everything inline: CSS, SVG plots drawn
in Python, and a few lines of JavaScript (clicking a node of the search tree shows that
candidate). The page loads nothing: its Content-Security-Policy forbids every network fetch and
allows only the report's own script (by hash), and every piece of text from the run (prompts,
queries, answers, rationales, notes) is HTML-escaped, so a prompt containing ``<script>`` is
shown, never run.

Sections: headline numbers, reward per level (line plot), the search tree, diffs of the best
prompt from level to level, per-aspect score distribution, selected-aspect frequencies, token
usage per role, prompt size per level, the final prompt with its ICL examples, the held-out
evaluation (when given, or when ``evaluation.json`` sits next to the artifact or the report),
the ICL optimisation stage (when it ran), notes, failures and the configuration.
The page's modules, one job each: ``view`` (what the sections need, computed once), ``draw``
(escaping, colours, SVG primitives), one module per group of sections (``overview``, ``tree``,
``diffs``, ``usage``, ``results``), and ``report.css`` / ``report.js`` (package files; the
script's hash goes into the Content-Security-Policy at render time).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path

from drpo_agents.artifact import AlignmentArtifact, ArtifactSource, load_artifact
from drpo_agents.errors import ArtifactError
from drpo_agents.evaluation import EvaluationReport
from drpo_agents.infra.run_files import ARTIFACT_FILE, EVALUATION_FILE, REPORT_FILE, artifact_path
from drpo_agents.report.diffs import diffs_section
from drpo_agents.report.draw import esc
from drpo_agents.report.overview import (
    header_html,
    kpis_html,
    reward_chart,
    rewards_section,
    simulation_banner,
)
from drpo_agents.report.results import (
    config_section,
    evaluation_section,
    final_section,
    icl_section,
    notes_section,
    trust_section,
)
from drpo_agents.report.tree import tree_section
from drpo_agents.report.usage import aspects_section, cost_section
from drpo_agents.report.view import View

__all__ = ["REPORT_FILE", "render_report", "reward_curve_svg", "write_report", "write_run_report"]


# The page's style and script ship as package files; the script is allowed by its hash.
_CSS = files(__package__).joinpath("report.css").read_text(encoding="utf-8")
_SCRIPT = files(__package__).joinpath("report.js").read_text(encoding="utf-8")


def write_report(
    artifact: ArtifactSource,
    path: str | Path,
    *,
    evaluation: EvaluationReport | None = None,
) -> Path:
    """Write the run report as one self-contained HTML file and return its path.

    Args:
        artifact: the artifact, the path of an ``artifact.json`` or of a run directory, or an
            artifact dict (see :func:`drpo_agents.artifact.load_artifact`).
        path: where to write the HTML (parent folders are created).
        evaluation: a held-out evaluation to include. Without it, an ``evaluation.json`` next
            to the artifact file (when ``artifact`` is a path) or next to ``path`` is used if
            there is one (``drpo evaluate`` writes it beside the artifact).

    Raises:
        ArtifactError: if ``artifact`` is not an artifact in any of those forms.
    """
    target = Path(path)
    folders: list[Path] = []
    if isinstance(artifact, str | Path):
        folders.append(artifact_path(Path(artifact)).parent)
    artifact = load_artifact(artifact)
    folders.append(target.parent)
    warnings: list[str] = []
    if evaluation is None:
        evaluation, warnings = find_evaluation(folders)
    page = render_report(artifact, evaluation=evaluation, warnings=warnings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    return target


def write_run_report(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write ``run_dir/report.html`` (or ``path``) from ``run_dir/artifact.json`` and any ``evaluation.json``."""
    directory = Path(run_dir)
    return write_report(directory / ARTIFACT_FILE, path if path is not None else directory / REPORT_FILE)


def render_report(
    artifact: AlignmentArtifact,
    *,
    evaluation: EvaluationReport | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    view = View.of(artifact)
    sections: list[tuple[str, str, str]] = [
        ("rewards", "Reward per level", rewards_section(view)),
        ("tree", "Search tree", tree_section(view)),
        ("diffs", "How the best prompt changed", diffs_section(view)),
        ("aspects", "Aspects", aspects_section(view)),
        ("cost", "Tokens and prompt size", cost_section(view)),
        ("trust", "Can the reward be trusted?", trust_section(view)),
        ("final", "Final prompt and ICL examples", final_section(view)),
    ]
    if evaluation is not None:
        sections.append(("evaluation", "Held-out evaluation", evaluation_section(evaluation)))
    if artifact.icl_optimization:
        sections.append(("icl", "ICL example optimisation", icl_section(view)))
    sections += [
        ("notes", "Notes and failures", notes_section(view, warnings)),
        ("config", "Configuration", config_section(view)),
    ]
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    body = "".join(
        f'<section class="card" id="{key}"><h2>{esc(title)}</h2>{content}</section>'
        for key, title, content in sections
    )
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    title = f"DRPO report · {artifact.run_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        '<body data-report="drpo">'
        f"{header_html(view, nav)}"
        f"<main>{kpis_html(view)}{simulation_banner(view)}{body}</main>"
        "<footer>Generated by drpo-agents · one self-contained file: no network, no external assets.</footer>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def reward_curve_svg(artifact: AlignmentArtifact) -> str:
    """The reward-per-level plot alone, as an SVG string (for notebooks: ``IPython.display.SVG``)."""
    return reward_chart(View.of(artifact))


def find_evaluation(folders: Iterable[Path]) -> tuple[EvaluationReport | None, list[str]]:
    seen: set[Path] = set()
    for folder in folders:
        candidate = (folder / EVALUATION_FILE).resolve()
        if candidate in seen or not candidate.is_file():
            continue
        seen.add(candidate)
        try:
            return EvaluationReport.load(candidate), []
        except ArtifactError as exc:
            return None, [f"{EVALUATION_FILE} next to the run could not be read: {exc}"]
    return None, []
