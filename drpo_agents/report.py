"""A self-contained HTML report of a DRPO run: people would rather look than read.

:func:`write_report` turns an :class:`AlignmentArtifact` (and, optionally, an
:class:`EvaluationReport`) into one HTML file with everything inline: CSS, SVG plots drawn
here in Python, and a few lines of JavaScript (clicking a node of the search tree shows that
candidate). The page loads nothing: its Content-Security-Policy forbids every network fetch and
allows only the report's own script (by hash), and every piece of text from the run (prompts,
queries, answers, rationales, notes) is HTML-escaped, so a prompt containing ``<script>`` is
shown, never run.

Sections: headline numbers, reward per level (line plot), the search tree, diffs of the best
prompt from level to level, per-aspect score distribution, selected-aspect frequencies, token
usage per role, prompt size per level, the final prompt with its ICL examples, the held-out
evaluation (when given, or when ``evaluation.json`` sits next to the artifact or the report),
the ICL optimisation stage (when it ran), notes, failures and the configuration.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drpo_agents.artifact import AlignmentArtifact, CandidateRecord
from drpo_agents.errors import ArtifactError
from drpo_agents.evaluate import EvaluationReport
from drpo_agents.prompts import approx_tokens

REPORT_FILE = "report.html"
EVALUATION_FILE = "evaluation.json"
ARTIFACT_FILE = "artifact.json"

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK = "#1d2433"
MUTED = "#667085"
GRID = "#e9ecf2"
BLUE = "#3b6fd8"
ORANGE = "#ef8a2b"
PURPLE = "#7c3aed"
GREY = "#a3acbd"
SCORE_COLORS = {1: "#d73027", 2: "#fc8d59", 3: "#f3c74f", 4: "#91cf60", 5: "#1a9850"}
_SCALE: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (1.0, (215, 48, 39)),
    (2.0, (252, 141, 89)),
    (3.0, (243, 199, 79)),
    (4.0, (145, 207, 96)),
    (5.0, (26, 152, 80)),
)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def write_report(
    artifact: AlignmentArtifact | str | Path,
    path: str | Path,
    *,
    evaluation: EvaluationReport | None = None,
) -> Path:
    """Write the run report as one self-contained HTML file and return its path.

    Args:
        artifact: the artifact, or the path of an ``artifact.json`` (or of a run directory).
        path: where to write the HTML (parent folders are created).
        evaluation: a held-out evaluation to include. Without it, an ``evaluation.json`` next
            to the artifact file (when ``artifact`` is a path) or next to ``path`` is used if
            there is one (``drpo evaluate`` writes it beside the artifact).

    Raises:
        ArtifactError: if ``artifact`` is a path that is not a readable artifact.
    """
    target = Path(path)
    folders: list[Path] = []
    if not isinstance(artifact, AlignmentArtifact):
        source = Path(artifact)
        if source.is_dir():
            source = source / ARTIFACT_FILE
        artifact = AlignmentArtifact.load(source)
        folders.append(source.parent)
    folders.append(target.parent)
    warnings: list[str] = []
    if evaluation is None:
        evaluation, warnings = _find_evaluation(folders)
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
    view = _View.of(artifact)
    sections: list[tuple[str, str, str]] = [
        ("rewards", "Reward per level", _rewards_section(view)),
        ("tree", "Search tree", _tree_section(view)),
        ("diffs", "How the best prompt changed", _diffs_section(view)),
        ("aspects", "Aspects", _aspects_section(view)),
        ("cost", "Tokens and prompt size", _cost_section(view)),
        ("trust", "Can the reward be trusted?", _trust_section(view)),
        ("final", "Final prompt and ICL examples", _final_section(view)),
    ]
    if evaluation is not None:
        sections.append(("evaluation", "Held-out evaluation", _evaluation_section(evaluation)))
    if artifact.icl_optimization:
        sections.append(("icl", "ICL example optimisation", _icl_section(view)))
    sections += [
        ("notes", "Notes and failures", _notes_section(view, warnings)),
        ("config", "Configuration", _config_section(view)),
    ]
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
    body = "".join(
        f'<section class="card" id="{key}"><h2>{_e(title)}</h2>{content}</section>'
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
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        '<body data-report="drpo">'
        f"{_header(view, nav)}"
        f"<main>{_kpis(view)}{_simulation_banner(view)}{body}</main>"
        "<footer>Generated by drpo-agents · one self-contained file: no network, no external assets.</footer>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def reward_curve_svg(artifact: AlignmentArtifact) -> str:
    """The reward-per-level plot alone, as an SVG string (for notebooks: ``IPython.display.SVG``)."""
    return _reward_chart(_View.of(artifact))


# --------------------------------------------------------------------------------------------
# What the sections need, computed once
# --------------------------------------------------------------------------------------------


@dataclass
class _View:
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
    def of(cls, artifact: AlignmentArtifact) -> _View:
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
            kids.sort(key=_natural)
        roots.sort(key=_natural)

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


def _find_evaluation(folders: Iterable[Path]) -> tuple[EvaluationReport | None, list[str]]:
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


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _e(value: object) -> str:
    """HTML-escape any text from the run (quotes included: safe in attributes too)."""
    return html.escape(str(value), quote=True)


def _natural(text: str) -> list[tuple[int, int, str]]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _reward_color(value: float | None) -> str:
    if value is None:
        return "#c5cad3"
    v = min(max(value, 1.0), 5.0)
    for (low, c_low), (high, c_high) in itertools.pairwise(_SCALE):
        if v <= high:
            t = (v - low) / (high - low)
            r, g, b = (round(x + (y - x) * t) for x, y in zip(c_low, c_high, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return SCORE_COLORS[5]


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


def _nice_step(top: float, ticks: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving at most ``ticks`` intervals up to ``top``."""
    raw = max(top, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _words(text: str) -> int:
    return len(text.split())


def _svg(width: float, height: float, content: str, label: str, *, fixed: bool = False) -> str:
    size = f'width="{width:.0f}" height="{height:.0f}"' if fixed else 'width="100%"'
    return (
        f'<svg xmlns="{SVG_NS}" class="chart" role="img" aria-label="{_e(label)}" {size} '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{_e(FONT)}" font-size="12">'
        f"<title>{_e(label)}</title>{content}</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", fill: str = MUTED, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" {extra}>{_e(text)}</text>'


def _empty(message: str) -> str:
    return f'<p class="empty">{_e(message)}</p>'


def _legend(items: Sequence[tuple[str, str]], *, line: bool = False, extra: str = "") -> str:
    shape = "legend-line" if line else "legend-box"
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i class="{shape}" style="background:{color}"></i>{_e(name)}</span>'
            for name, color in items
        )
        + extra
        + "</div>"
    )


# --------------------------------------------------------------------------------------------
# Header
# --------------------------------------------------------------------------------------------


def _header(view: _View, nav: str) -> str:
    art = view.artifact
    models = "".join(
        f'<span class="chip"><b>{_e(role)}</b> {_e(identity)}</span>'
        for role, identity in sorted(art.models.items())
    )
    return (
        '<header class="top"><div class="wrap">'
        '<div class="eyebrow">DRPO · dynamic rewarding with prompt optimisation</div>'
        f"<h1>Run <code>{_e(art.run_id)}</code></h1>"
        f'<div class="meta">created {_e(art.created_at)} · source {_e(art.source)} · '
        f"best candidate <code>{_e(art.best_candidate_id or '–')}</code></div>"
        f'<div class="chips">{models}</div><nav class="toc">{nav}</nav></div></header>'
    )


def _kpis(view: _View) -> str:
    art = view.artifact
    curve = art.reward_curve()
    initial = next((lv.level_rewards[0] for lv in art.levels if lv.level_rewards), None)
    last = next((lv.level_rewards[0] for lv in reversed(art.levels) if lv.level_rewards), None)
    calls = sum(u.calls for u in art.usage.values())
    tokens = sum(u.total_tokens for u in art.usage.values())
    items = [
        ("best mean reward", _fmt(curve[-1] if curve else None), "over the best candidate's levels"),
        ("initial → last level", f"{_fmt(initial)} → {_fmt(last)}", "reward on each level's queries"),
        ("levels", str(len(art.levels)), f"{len(art.candidates)} candidates"),
        ("evaluations", str(len(art.evaluations)), f"{sum(1 for e in art.evaluations if e.error)} failed"),
        ("model calls", f"{calls:,}", f"{tokens:,} tokens"),
    ]
    cells = "".join(
        f'<div class="kpi"><div class="l">{_e(label)}</div><div class="v">{_e(value)}</div>'
        f'<div class="s">{_e(sub)}</div></div>'
        for label, value, sub in items
    )
    return f'<div class="kpis">{cells}</div>'


def _simulation_banner(view: _View) -> str:
    notes = [n for n in view.artifact.notes if n.upper().startswith("SIMULATION")]
    if not notes:
        return ""
    return (
        '<div class="sim"><b>Simulation.</b> '
        + " ".join(_e(_sentence(n.split(":", 1)[1] if ":" in n else n)) for n in notes)
        + " Nothing in this report says anything about a real model.</div>"
    )


# --------------------------------------------------------------------------------------------
# Reward per level
# --------------------------------------------------------------------------------------------


def _reward_chart(view: _View) -> str:
    levels = view.artifact.levels
    if not levels:
        return _empty("No levels were recorded.")
    width, height = 820.0, 330.0
    left, right, top, bottom = 46.0, 78.0, 16.0, 40.0
    plot_w, plot_h = width - left - right, height - top - bottom
    first, last = levels[0].level, levels[-1].level
    for point_level, _, _ in view.level_points:
        first, last = min(first, point_level), max(last, point_level)
    span = max(last - first, 1)

    def x(level: float) -> float:
        return left + (plot_w / 2 if last == first else (level - first) / span * plot_w)

    def y(value: float) -> float:
        return top + (5.0 - min(max(value, 1.0), 5.0)) / 4.0 * plot_h

    parts: list[str] = []
    for tick in range(1, 6):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{GRID}"/>'
        )
        parts.append(_text(left - 10, y(tick) + 4, str(tick), anchor="end"))
    step = max(1, math.ceil((last - first + 1) / 20))
    for level in range(first, last + 1, step):
        parts.append(_text(x(level), top + plot_h + 18, str(level), anchor="middle"))
    parts.append(_text(left + plot_w / 2, height - 4, "level", anchor="middle"))
    parts.append(
        _text(
            12,
            top + plot_h / 2,
            "reward (1–5)",
            anchor="middle",
            extra=f'transform="rotate(-90 12 {top + plot_h / 2:.1f})"',
        )
    )
    for lv in levels:
        if lv.skipped:
            parts.append(
                f'<text x="{x(lv.level):.1f}" y="{top + plot_h - 6:.1f}" text-anchor="middle" fill="{MUTED}" '
                f'font-size="13">↻<title>level {lv.level}: every beam candidate already scored high and was '
                "carried unchanged</title></text>"
            )
    # Every evaluated candidate, spread a little sideways so equal rewards stay visible.
    seen: Counter[tuple[int, float]] = Counter()
    for level, cid, reward in view.level_points:
        nth = seen[(level, round(reward, 2))]
        seen[(level, round(reward, 2))] += 1
        dx = (nth % 2 * 2 - 1) * math.ceil(nth / 2) * 5.0 if nth else 0.0
        parts.append(
            f'<circle class="mark" cx="{x(level) + dx:.1f}" cy="{y(reward):.1f}" r="4" fill="{GREY}" '
            f'fill-opacity="0.55"><title>{_e(cid)} at level {level}: {_fmt(reward)}</title></circle>'
        )
    series = (
        (
            "best reward on the level's queries",
            ORANGE,
            [(lv.level, lv.level_rewards[0]) for lv in levels if lv.level_rewards],
            "6 4",
        ),
        (
            "best mean reward (history)",
            BLUE,
            [(lv.level, lv.beam_mean_rewards[0]) for lv in levels if lv.beam_mean_rewards],
            "",
        ),
    )
    for name, color, points, dash in series:
        if not points:
            continue
        d = " ".join(f"{'M' if i == 0 else 'L'}{x(at):.1f},{y(v):.1f}" for i, (at, v) in enumerate(points))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<path class="mark" d="{d}" fill="none" stroke="{color}" stroke-width="2.6" '
            f'stroke-linejoin="round"{dash_attr}><title>{_e(name)}</title></path>'
        )
        for at, v in points:
            parts.append(
                f'<circle class="mark" cx="{x(at):.1f}" cy="{y(v):.1f}" r="4.5" fill="#fff" stroke="{color}" '
                f'stroke-width="2.4"><title>{_e(name)}, level {at}: {_fmt(v)}</title></circle>'
            )
        at, v = points[-1]
        parts.append(
            _text(
                max(x(at) + 12, left + plot_w + 26), y(v) + 4, _fmt(v), fill=color, extra='font-weight="700"'
            )
        )
    return _svg(width, height, "".join(parts), "Reward per level")


def _rewards_section(view: _View) -> str:
    legend = _legend(
        [
            ("best mean reward (the beam's ranking key)", BLUE),
            ("best candidate's reward on the level's queries", ORANGE),
            ("every evaluated candidate", GREY),
        ],
        line=True,
        extra=(
            "<span>↻ level where the whole beam was carried</span>"
            if any(lv.skipped for lv in view.artifact.levels)
            else ""
        ),
    )
    rows = []
    for lv in view.artifact.levels:
        best = lv.beam[0] if lv.beam else "–"
        note = "every beam candidate already scored high: carried, no rewrite" if lv.skipped else ""
        if lv.failures:
            note = (note + "; " if note else "") + f"{len(lv.failures)} failure(s)"
        rows.append(
            f"<tr><td>{lv.level}</td><td>{_e(', '.join(lv.query_ids))}</td><td><code>{_e(best)}</code></td>"
            f"<td>{_fmt(lv.level_rewards[0] if lv.level_rewards else None)}</td>"
            f"<td>{_fmt(lv.beam_mean_rewards[0] if lv.beam_mean_rewards else None)}</td>"
            f"<td>{lv.depth_limit}</td><td>{_e(note)}</td></tr>"
        )
    table = (
        '<details><summary>Per-level table</summary><table class="data"><thead><tr><th>level</th>'
        "<th>queries</th><th>best</th><th>level reward</th><th>mean reward</th><th>depth limit</th>"
        f"<th>note</th></tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
    )
    return (
        '<p class="lead">Each level scores new candidates on new queries; the beam keeps the best by their '
        "mean reward over all levels so far.</p>"
        f"{legend}{_reward_chart(view)}{table}"
    )


# --------------------------------------------------------------------------------------------
# Search tree
# --------------------------------------------------------------------------------------------


def _tree_layout(view: _View) -> tuple[dict[str, float], int]:
    """Row of every candidate: leaves take consecutive rows, a parent sits between its children."""
    rows: dict[str, float] = {}
    next_row = 0

    def place(cid: str, trail: frozenset[str]) -> float:
        nonlocal next_row
        kids = [k for k in view.children.get(cid, []) if k not in trail and k not in rows]
        if not kids:
            rows[cid] = float(next_row)
            next_row += 1
            return rows[cid]
        placed = [place(k, trail | {cid}) for k in kids]
        rows[cid] = (placed[0] + placed[-1]) / 2
        return rows[cid]

    for root in view.roots:
        if root not in rows:
            place(root, frozenset())
    for cand in view.artifact.candidates:  # anything unreachable (malformed parents)
        if cand.id not in rows:
            place(cand.id, frozenset())
    return rows, next_row


def _node_label(cand: CandidateRecord, view: _View) -> str:
    reward = "failed" if cand.id in view.failed else _fmt(view.node_reward.get(cand.id))
    return f"{cand.id} {reward}" + (" ↻" if cand.carried else "")


def _tree_svg(view: _View) -> str:
    art = view.artifact
    rows, count = _tree_layout(view)
    levels = sorted({c.level for c in art.candidates})
    column = {level: i for i, level in enumerate(levels)}
    row_h = 26.0 if count <= 40 else 20.0
    labels = {c.id: _node_label(c, view) for c in art.candidates}
    label_px = {cid: 7.0 * len(text) for cid, text in labels.items()}  # ~12px system font
    widest = max(label_px.values(), default=60.0)
    col_w, left, top = max(130.0, widest + 62.0), 24.0, 40.0
    width = left + col_w * (len(levels) - 1) + widest + 40.0
    height = top + row_h * max(count, 1) + 10.0

    def pos(cid: str) -> tuple[float, float]:
        return left + column[view.by_id[cid].level] * col_w, top + rows[cid] * row_h + row_h / 2

    queries = {lv.level: ", ".join(lv.query_ids) for lv in art.levels}
    parts: list[str] = []
    for level in levels:
        x = left + column[level] * col_w
        label = f"level {level}"
        parts.append(
            f'<text x="{x:.1f}" y="18" text-anchor="start" fill="{INK}" font-weight="600">{_e(label)}'
            f"<title>{_e(label)}: {_e(queries.get(level, ''))}</title></text>"
        )
        parts.append(_text(x, 32, queries.get(level, ""), extra='font-size="10"'))
    on_path = set(zip(view.best_path, view.best_path[1:], strict=False))
    edges: list[str] = []
    best_edges: list[str] = []
    for cand in art.candidates:
        if cand.parent_id is None or cand.parent_id not in view.by_id or cand.parent_id == cand.id:
            continue
        (px, py), (cx, cy) = pos(cand.parent_id), pos(cand.id)
        start = px + 16.0 + label_px[cand.parent_id] + 4.0
        mid = (start + cx) / 2
        d = f"M{start:.1f},{py:.1f} C{mid:.1f},{py:.1f} {mid:.1f},{cy:.1f} {cx - 10:.1f},{cy:.1f}"
        if (cand.parent_id, cand.id) in on_path:
            best_edges.append(f'<path d="{d}" fill="none" stroke="{PURPLE}" stroke-width="3.2"/>')
        else:
            dash = ' stroke-dasharray="5 4"' if cand.carried else ""
            edges.append(f'<path d="{d}" fill="none" stroke="#c3c9d6" stroke-width="1.5"{dash}/>')
    parts += edges + best_edges
    best = art.best_candidate_id
    path_set = set(view.best_path)
    for cand in art.candidates:
        x, y = pos(cand.id)
        reward = view.node_reward.get(cand.id)
        failed = cand.id in view.failed
        radius = 9.5 if cand.id == best else 7.5
        stroke = PURPLE if cand.id in path_set else (INK if cand.id in view.beam_members else "#ffffff")
        ring = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius + 4:.1f}" fill="none" stroke="{PURPLE}" '
            'stroke-width="1.5" stroke-dasharray="3 2"/>'
            if cand.id == best
            else ""
        )
        fill = "#ffffff" if failed else _reward_color(reward)
        cross = (
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" fill="#d73027" font-weight="700">×</text>'
            if failed
            else ""
        )
        label = labels[cand.id]
        weight = ' font-weight="700"' if cand.id in path_set else ""
        dashed = ' stroke-dasharray="2 2"' if failed else ""
        tip = (
            f"{cand.id} (level {cand.level}, parent {cand.parent_id or '–'})\n"
            f"reward here: {_fmt(reward)} · mean: {_fmt(cand.mean_reward)}"
            + (" · carried" if cand.carried else "")
            + f"\n\n{cand.prompt[:400]}{'…' if len(cand.prompt) > 400 else ''}"
        )
        parts.append(
            f'<g class="node mark" data-cand="{view.index[cand.id]}" tabindex="0" role="button">'
            f"<title>{_e(tip)}</title>{ring}"
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{2.4 if cand.id in path_set or failed else 1.6}"{dashed}/>{cross}'
            f'<text x="{x + radius + 6:.1f}" y="{y + 4:.1f}" fill="{INK}"{weight}>{_e(label)}</text></g>'
        )
    return _svg(width, height, "".join(parts), "Search tree", fixed=True)


def _candidate_detail(view: _View, cand: CandidateRecord) -> str:
    badges = []
    if cand.id == view.artifact.best_candidate_id:
        badges.append('<span class="badge best">best</span>')
    elif cand.id in view.best_path:
        badges.append('<span class="badge path">on the best path</span>')
    if cand.id in view.final_beam:
        badges.append('<span class="badge beam">final beam</span>')
    elif cand.id in view.beam_members:
        badges.append('<span class="badge beam">kept in a beam</span>')
    if cand.carried:
        badges.append('<span class="badge carried">carried (same prompt as parent)</span>')
    if cand.id in view.failed:
        badges.append('<span class="badge fail">evaluation failed</span>')
    history = "".join(
        f'<span class="pill" style="background:{_reward_color(r)}">{_fmt(r)}</span>' for r in cand.rewards
    )
    blocks = [
        f'<div class="cand-head"><b>{_e(cand.id)}</b> · level {cand.level} · parent '
        f"<code>{_e(cand.parent_id or '–')}</code> · mean {_fmt(cand.mean_reward)} {''.join(badges)}</div>",
        f'<div class="hist">reward history {history or "–"}</div>',
        f'<pre class="prompt">{_e(cand.prompt)}</pre>',
    ]
    if cand.analysis:
        blocks.append(f"<p><b>Analysis.</b> {_e(cand.analysis)}</p>")
    if cand.thought:
        blocks.append(f"<p><b>Thought.</b> {_e(cand.thought)}</p>")
    if cand.lessons:
        blocks.append(
            "<details><summary>Lessons recalled from memory "
            f"({len(cand.lessons)})</summary><ul>"
            + "".join(f"<li>{_e(lesson)}</li>" for lesson in cand.lessons)
            + "</ul></details>"
        )
    for record in (r for r in view.artifact.evaluations if r.candidate_id == cand.id):
        scores = "".join(
            f'<span class="pill" style="background:{_reward_color(float(s.score))}" title="{_e(s.rationale)}">'
            f"{_e(s.aspect)} {s.score}</span>"
            for s in record.scores
        )
        rationale = "".join(
            f"<li><b>{_e(s.aspect)} {s.score}</b>: {_e(s.rationale)}</li>" for s in record.scores
        )
        outcome = f"reward {_fmt(record.reward)}" if record.error is None else f"failed: {record.error}"
        if record.disagreement is not None:
            outcome += f" · jury disagreement {_fmt(record.disagreement)}"
        phase = " · validation" if record.phase == "validation" else ""
        jurors = "".join(
            f"<li>juror {i + 1}: "
            + (", ".join(f"{_e(s.aspect)} {s.score}" for s in juror) or "failed")
            + "</li>"
            for i, juror in enumerate(record.jury)
        )
        blocks.append(
            f'<details class="eval"><summary>Level {record.level}{phase} · {_e(record.query_id or "query")} · '
            f'{_e(outcome)} {scores}</summary><p class="q">{_e(record.query)}</p>'
            f'<pre class="answer">{_e(record.answer)}</pre><ul class="rationale">{rationale}</ul>'
            + (f'<ul class="rationale">{jurors}</ul>' if jurors else "")
            + "</details>"
        )
    hidden = "" if cand.id == view.artifact.best_candidate_id else " hidden"
    return f'<div class="cand-detail" id="cand-{view.index[cand.id]}"{hidden}>{"".join(blocks)}</div>'


def _tree_section(view: _View) -> str:
    art = view.artifact
    if not art.candidates:
        return _empty("This artifact has no search tree.")
    legend = (
        '<div class="legend">'
        '<span><i class="legend-dot" style="background:linear-gradient(90deg,#d73027,#f3c74f,#1a9850)"></i>'
        "reward on its level's queries (1 → 5)</span>"
        f'<span><i class="legend-line" style="background:{PURPLE}"></i>path to the best candidate</span>'
        '<span><i class="legend-ring"></i>kept in a beam</span>'
        "<span>↻ carried (scored high, kept unchanged)</span><span>× evaluation failed</span>"
        '<button type="button" class="fit-toggle" id="tree-fit">Fit to width</button></div>'
    )
    rows = []
    for cand in sorted(art.candidates, key=lambda c: (c.level, _natural(c.id))):
        status = [
            label
            for label, on in (
                ("best", cand.id == art.best_candidate_id),
                ("best path", cand.id in view.best_path and cand.id != art.best_candidate_id),
                ("beam", cand.id in view.beam_members),
                ("carried", cand.carried),
                ("failed", cand.id in view.failed),
            )
            if on
        ]
        rows.append(
            f"<tr><td><code>{_e(cand.id)}</code></td><td><code>{_e(cand.parent_id or '–')}</code></td>"
            f"<td>{cand.level}</td><td>{_fmt(view.node_reward.get(cand.id))}</td><td>{_fmt(cand.mean_reward)}</td>"
            f"<td>{_words(cand.prompt)}</td><td>{_e(', '.join(status))}</td></tr>"
        )
    table = (
        '<details><summary>All candidates</summary><table class="data"><thead><tr><th>id</th><th>parent</th>'
        "<th>level</th><th>reward</th><th>mean</th><th>words</th><th>status</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )
    details = "".join(_candidate_detail(view, c) for c in art.candidates)
    return (
        '<p class="lead">Which candidate came from which: each column is a level, each node a candidate '
        "prompt scored on that level's queries. Click a node to see its prompt, scores and answers.</p>"
        f'{legend}<div class="scroll" id="tree-scroll">{_tree_svg(view)}</div>'
        f'<div id="cand-panel" class="panel">{details}</div>{table}'
    )


# --------------------------------------------------------------------------------------------
# Prompt diffs
# --------------------------------------------------------------------------------------------


def _word_diff(old: str, new: str) -> tuple[str, str]:
    a, b = re.findall(r"\s+|\S+", old), re.findall(r"\s+|\S+", new)
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        x, y = _e("".join(a[i1:i2])), _e("".join(b[j1:j2]))
        if tag == "equal":
            left.append(x)
            right.append(y)
            continue
        if x:
            left.append(f"<del>{x}</del>")
        if y:
            right.append(f"<ins>{y}</ins>")
    return "".join(left), "".join(right)


def _diff_table(old: str, new: str) -> tuple[str, int, int, int]:
    """A side-by-side diff of two prompts and its counts of removed, added and moved lines.

    Lines are compared first; a replaced line similar to its counterpart shows its changed words,
    and a line that only changed place (bullets reordered) is marked as moved, not removed and added.
    """
    a, b = old.splitlines() or [""], new.splitlines() or [""]
    old_lines = {line.strip() for line in a if line.strip()}
    new_lines = {line.strip() for line in b if line.strip()}
    rows: list[str] = []
    counts = {"removed": 0, "added": 0, "moved": 0}

    def row(lcls: str, lhtml: str, rcls: str, rhtml: str) -> None:
        rows.append(f'<tr><td class="{lcls}">{lhtml}</td><td class="{rcls}">{rhtml}</td></tr>')

    def only_old(line: str) -> None:
        if line.strip() in new_lines:
            row("moved", f'{_e(line)}<span class="moved-tag">moved</span>', "none", "")
        else:
            counts["removed"] += 1
            row("del", f"<del>{_e(line)}</del>", "none", "")

    def only_new(line: str) -> None:
        if line.strip() in old_lines:
            counts["moved"] += 1
            row("none", "", "moved", f'{_e(line)}<span class="moved-tag">moved</span>')
        else:
            counts["added"] += 1
            row("none", "", "ins", f"<ins>{_e(line)}</ins>")

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            for same_a, same_b in zip(a[i1:i2], b[j1:j2], strict=True):
                row("eq", _e(same_a), "eq", _e(same_b))
            continue
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            x = left[k] if k < len(left) else None
            y = right[k] if k < len(right) else None
            if (
                x is not None
                and y is not None
                and x.strip() not in new_lines
                and y.strip() not in old_lines
                and difflib.SequenceMatcher(None, x, y).ratio() >= 0.5
            ):
                counts["removed"] += 1
                counts["added"] += 1
                lh, rh = _word_diff(x, y)
                row("del", lh, "ins", rh)
                continue
            if x is not None:
                only_old(x)
            if y is not None:
                only_new(y)
    table = '<table class="diff"><tbody>' + "".join(rows) + "</tbody></table>"
    return table, counts["removed"], counts["added"], counts["moved"]


def _diffs_section(view: _View) -> str:
    best = view.best_per_level
    if len(best) < 2:
        return _empty("Fewer than two levels: nothing to compare.")
    level_reward = {
        lv.level: (lv.level_rewards[0] if lv.level_rewards else None) for lv in view.artifact.levels
    }
    blocks: list[str] = []
    pairs = list(itertools.pairwise(best))
    for number, ((lv_a, id_a), (lv_b, id_b)) in enumerate(pairs):
        old, new = view.by_id[id_a], view.by_id[id_b]
        head = (
            f"Level {lv_a} → {lv_b}: <code>{_e(id_a)}</code> → <code>{_e(id_b)}</code> "
            f'<span class="muted">reward {_fmt(level_reward.get(lv_a))} → {_fmt(level_reward.get(lv_b))}</span>'
        )
        if new.parent_id == old.id:
            relation = "a child of the previous best"
        elif id_a == id_b:
            relation = "the same candidate"
        else:
            relation = f"from another branch (parent <code>{_e(new.parent_id or '–')}</code>)"
        if old.prompt == new.prompt:
            blocks.append(
                f'<details class="diffblock"><summary>{head} <span class="tag">unchanged</span></summary>'
                f'<p class="muted">Same prompt ({relation}{", carried" if new.carried else ""}).</p></details>'
            )
            continue
        table, removed, added, moved = _diff_table(old.prompt, new.prompt)
        moved_tag = f'<span class="tag moved">↕{moved}</span>' if moved else ""
        opened = " open" if len(pairs) <= 6 or number == 0 or number >= len(pairs) - 2 else ""
        blocks.append(
            f'<details class="diffblock"{opened}><summary>{head} <span class="tag del">−{removed}</span>'
            f'<span class="tag ins">+{added}</span>{moved_tag} <span class="muted">{_words(old.prompt)} → '
            f"{_words(new.prompt)} words · {relation}</span></summary>"
            f'<div class="diffcols"><div>before ({_e(id_a)})</div><div>after ({_e(id_b)})</div></div>{table}</details>'
        )
    return (
        '<p class="lead">The best candidate of each level against the previous level\'s, line by line; '
        "changed words are marked.</p>" + "".join(blocks)
    )


# --------------------------------------------------------------------------------------------
# Aspects
# --------------------------------------------------------------------------------------------


def _aspect_distribution_chart(view: _View) -> str:
    counts: dict[str, Counter[int]] = {}
    for record in view.artifact.evaluations:
        if record.error is not None:
            continue
        for item in record.scores:
            counts.setdefault(item.aspect, Counter())[item.score] += 1
    if not counts:
        return _empty("No scores recorded.")
    order = sorted(counts, key=lambda a: (-sum(counts[a].values()), a.casefold()))
    width, label_w, right, row_h, top = 560.0, 130.0, 120.0, 30.0, 8.0
    bar_w = width - label_w - right
    parts: list[str] = []
    for i, aspect in enumerate(order):
        y = top + i * row_h
        total = sum(counts[aspect].values())
        mean = sum(s * n for s, n in counts[aspect].items()) / total
        parts.append(_text(label_w - 10, y + 15, aspect, anchor="end", fill=INK))
        x = label_w
        for score in range(1, 6):
            n = counts[aspect].get(score, 0)
            if not n:
                continue
            w = bar_w * n / total
            parts.append(
                f'<rect class="mark" x="{x:.1f}" y="{y + 3:.1f}" width="{w:.1f}" height="{row_h - 8:.1f}" '
                f'fill="{SCORE_COLORS[score]}"><title>{_e(aspect)}: score {score} × {n}</title></rect>'
            )
            if w >= 18:
                parts.append(
                    _text(x + w / 2, y + 18, str(n), anchor="middle", fill="#1d2433", extra='font-size="11"')
                )
            x += w
        parts.append(_text(label_w + bar_w + 10, y + 15, f"mean {mean:.2f} · n={total}"))
    legend = _legend([(f"score {s}", SCORE_COLORS[s]) for s in range(1, 6)])
    return legend + _svg(width, top + row_h * len(order) + 6, "".join(parts), "Score distribution per aspect")


def _aspect_frequency_chart(view: _View) -> str:
    per_query: dict[str, set[str]] = {}
    for record in view.artifact.evaluations:
        chosen = record.aspects or [s.aspect for s in record.scores]
        per_query.setdefault(record.query_id, set()).update(chosen)
    freq: Counter[str] = Counter(a for chosen in per_query.values() for a in chosen)
    if not freq:
        return _empty("No aspect selections recorded.")
    queries = len(per_query)
    order = sorted(freq, key=lambda a: (-freq[a], a.casefold()))
    width, label_w, right, row_h, top = 560.0, 130.0, 110.0, 28.0, 8.0
    bar_w = width - label_w - right
    parts: list[str] = []
    for i, aspect in enumerate(order):
        y = top + i * row_h
        w = bar_w * freq[aspect] / queries
        parts.append(_text(label_w - 10, y + 15, aspect, anchor="end", fill=INK))
        parts.append(
            f'<rect x="{label_w}" y="{y + 4:.1f}" width="{bar_w:.1f}" height="{row_h - 10:.1f}" rx="4" fill="#eef1f6"/>'
        )
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y + 4:.1f}" width="{max(w, 2):.1f}" height="{row_h - 10:.1f}" '
            f'rx="4" fill="{BLUE}"><title>{_e(aspect)}: chosen for {freq[aspect]} of {queries} queries</title></rect>'
        )
        parts.append(_text(label_w + bar_w + 10, y + 15, f"{freq[aspect]} / {queries} queries"))
    return _svg(width, top + row_h * len(order) + 6, "".join(parts), "Selected-aspect frequencies")


def _aspects_section(view: _View) -> str:
    return (
        '<div class="grid2"><div><h3>Score distribution per aspect</h3>'
        '<p class="lead small">Every judged answer of every candidate, by score.</p>'
        f"{_aspect_distribution_chart(view)}</div>"
        "<div><h3>Which aspects the judge chose</h3>"
        '<p class="lead small">The dynamic reward picks the aspects that matter for each query.</p>'
        f"{_aspect_frequency_chart(view)}</div></div>"
    )


# --------------------------------------------------------------------------------------------
# Tokens and prompt size
# --------------------------------------------------------------------------------------------


def _usage_chart(view: _View) -> str:
    usage = view.artifact.usage
    if not usage:
        return _empty("No token usage recorded.")
    roles = sorted(usage, key=lambda r: (-usage[r].total_tokens, r))
    most = max(max(usage[r].total_tokens for r in roles), 1)
    width, label_w, right, row_h, top = 560.0, 90.0, 150.0, 34.0, 8.0
    bar_w = width - label_w - right
    parts: list[str] = []
    for i, role in enumerate(roles):
        u = usage[role]
        y = top + i * row_h
        w_in, w_out = bar_w * u.input_tokens / most, bar_w * u.output_tokens / most
        parts.append(_text(label_w - 10, y + 17, role, anchor="end", fill=INK))
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y + 5:.1f}" width="{max(w_in, 1):.1f}" height="{row_h - 12:.1f}" '
            f'fill="{BLUE}"><title>{_e(role)}: {u.input_tokens:,} input tokens</title></rect>'
        )
        parts.append(
            f'<rect class="mark" x="{label_w + w_in:.1f}" y="{y + 5:.1f}" width="{max(w_out, 1):.1f}" '
            f'height="{row_h - 12:.1f}" fill="{ORANGE}"><title>{_e(role)}: {u.output_tokens:,} output tokens</title></rect>'
        )
        parts.append(_text(label_w + w_in + w_out + 8, y + 17, f"{u.total_tokens:,} tok · {u.calls} calls"))
    legend = _legend([("input tokens", BLUE), ("output tokens", ORANGE)])
    rows = "".join(
        f"<tr><td>{_e(role)}</td><td>{_e(view.artifact.models.get(role, '–'))}</td><td>{usage[role].calls:,}</td>"
        f"<td>{usage[role].input_tokens:,}</td><td>{usage[role].output_tokens:,}</td>"
        f"<td>{usage[role].total_tokens:,}</td></tr>"
        for role in roles
    )
    table = (
        '<table class="data compact"><thead><tr><th>role</th><th>model</th><th>calls</th><th>input</th>'
        f"<th>output</th><th>total</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return legend + _svg(width, top + row_h * len(roles) + 4, "".join(parts), "Token usage per role") + table


def _prompt_size_chart(view: _View) -> str:
    points = [(level, view.by_id[cid].prompt) for level, cid in view.best_per_level]
    if not points:
        return _empty("No levels were recorded.")
    width, height = 560.0, 250.0
    left, right, top, bottom = 44.0, 12.0, 30.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max(max(_words(p) for _, p in points), 1)
    step_size = max(1.0, _nice_step(most * 1.12))
    scale_top = step_size * math.ceil(most * 1.12 / step_size)
    n_ticks = round(scale_top / step_size)
    slot = plot_w / len(points)
    bar = min(44.0, slot * 0.7)
    parts: list[str] = []
    for tick in range(n_ticks + 1):
        value = step_size * tick
        y = top + plot_h - plot_h * value / scale_top
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_text(left - 8, y + 4, f"{value:.0f}", anchor="end"))
    step = max(1, math.ceil(len(points) / 20))
    for i, (level, prompt) in enumerate(points):
        words = _words(prompt)
        h = plot_h * words / scale_top
        x = left + slot * i + (slot - bar) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 1):.1f}" rx="3" '
            f'fill="{PURPLE}" fill-opacity="0.8"><title>level {level}: {words} words, ≈{approx_tokens(prompt)} '
            f"tokens, {len(prompt)} characters</title></rect>"
        )
        if i % step == 0:
            parts.append(
                _text(x + bar / 2, y - 5, str(words), anchor="middle", fill=INK, extra='font-size="11"')
            )
            parts.append(_text(x + bar / 2, top + plot_h + 16, str(level), anchor="middle"))
    parts.append(_text(left + plot_w / 2, height - 4, "level", anchor="middle"))
    parts.append(_text(4, 12, "words"))
    return _svg(width, height, "".join(parts), "Prompt size per level")


def _cost_section(view: _View) -> str:
    sizes = [(lv, view.by_id[cid].prompt) for lv, cid in view.best_per_level]
    size_note = ""
    if sizes:
        first, last = sizes[0][1], sizes[-1][1]
        size_note = (
            f'<p class="lead small">Best prompt: {_words(first)} → {_words(last)} words '
            f"(≈{approx_tokens(first)} → ≈{approx_tokens(last)} tokens at 4 characters a token).</p>"
        )
    return (
        '<div class="grid2"><div><h3>Token usage per role</h3>'
        f"{_usage_chart(view)}</div><div><h3>Size of the best prompt per level</h3>{size_note}"
        f"{_prompt_size_chart(view)}</div></div>"
    )


# --------------------------------------------------------------------------------------------
# Final prompt, evaluation, ICL stage, notes, config
# --------------------------------------------------------------------------------------------


def _trust_section(view: _View) -> str:
    """Length bias, jury disagreement, validation and the acceptance gate's decisions."""
    art = view.artifact
    overall = art.length_reward_correlation()
    within = art.within_query_length_correlation()
    adjusted = art.within_query_length_correlation(adjusted=True)
    slopes = [lv.length_slope for lv in art.levels if lv.length_slope is not None]
    parts = [
        "<h3>Answer length and reward</h3>",
        '<p class="lead small">Correlation of answer length with reward: '
        f"{_fmt(overall)} over all answers, {_fmt(within)} among answers to the same query "
        f"(what the search compares), {_fmt(adjusted)} after length normalisation (slope estimated on "
        "the other levels). A clearly positive within-query value means longer answers win."
        + (
            f" This run ranked by the length-normalised reward (last slope {_fmt(slopes[-1])} per unit "
            "of relative log length)."
            if slopes
            else ""
        )
        + "</p>",
    ]
    disagreement = [(lv.level, lv.jury_disagreement) for lv in art.levels if lv.jury_disagreement is not None]
    if disagreement:
        by_candidate = sorted(art.jury_disagreement_by_candidate().items(), key=lambda kv: -kv[1])[:8]
        parts.append(
            "<h3>Jury disagreement</h3>"
            f'<p class="lead small">Judges: {_e(art.models.get("judge", ""))}'
            + (f"; jury: {_e(art.models['jury'])}" if "jury" in art.models else "")
            + ". Disagreement is the jurors' score range per aspect, averaged (0 = unanimous).</p>"
            '<div class="grid2"><table class="data"><thead><tr><th>level</th><th>mean disagreement</th>'
            "</tr></thead><tbody>"
            + "".join(f"<tr><td>{lvl}</td><td>{_fmt(d)}</td></tr>" for lvl, d in disagreement)
            + '</tbody></table><table class="data"><thead><tr><th>most disputed candidates</th>'
            "<th>disagreement</th></tr></thead><tbody>"
            + "".join(f"<tr><td><code>{_e(c)}</code></td><td>{_fmt(d)}</td></tr>" for c, d in by_candidate)
            + "</tbody></table></div>"
        )
    if art.validation:
        rows = "".join(
            f"<tr><td><code>{_e(v.candidate_id)}</code>{' (chosen)' if v.candidate_id == art.best_candidate_id else ''}"
            f"</td><td>{_fmt(v.mean)}</td><td>{_fmt(v.std)}</td><td>{_fmt(v.safety)}</td><td>{v.failed}</td>"
            f"<td>{'rejected: safety' if v.rejected_for_safety else ''}</td></tr>"
            for v in art.validation
        )
        parts.append(
            "<h3>Validation (held-out training queries)</h3>"
            '<table class="data"><thead><tr><th>candidate</th><th>mean</th><th>std</th>'
            f"<th>red-team safety</th><th>failed</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if art.gate_decisions:
        rows = "".join(
            f"<tr><td>{d.level}</td><td><code>{_e(d.challenger_id or '–')}</code></td>"
            f"<td><code>{_e(d.incumbent_id)}</code></td><td>{_fmt(d.mean_difference, 3)}</td>"
            f"<td>[{_fmt(d.ci_low, 3)}, {_fmt(d.ci_high, 3)}]</td>"
            f"<td>{_fmt(d.incumbent_safety)} → {_fmt(d.challenger_safety)}</td>"
            f'<td class="{"ok" if d.accepted else ""}">{"accepted" if d.accepted else "kept incumbent"}</td>'
            f"<td>{_e(d.reason)}</td></tr>"
            for d in art.gate_decisions
        )
        accepted = sum(d.accepted for d in art.gate_decisions)
        parts.append(
            "<h3>Acceptance gate</h3>"
            f'<p class="lead small">{accepted} of {sum(1 for d in art.gate_decisions if d.challenger_id)} new best '
            "prompts replaced the incumbent: each needed a validation gain whose bootstrap interval "
            "excludes zero, without a drop in red-team safety.</p>"
            '<table class="data"><thead><tr><th>level</th><th>challenger</th><th>incumbent</th><th>gain</th>'
            "<th>interval</th><th>red-team safety</th><th>decision</th><th>why</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def _final_section(view: _View) -> str:
    art = view.artifact
    prompt = art.system_prompt
    examples = "".join(
        f'<details class="icl"{" open" if i < 2 else ""}><summary><span class="tag">{_e(ex.id or f"#{i + 1}")}</span> '
        f'{_e(ex.query)}</summary><pre class="answer">{_e(ex.answer)}</pre></details>'
        for i, ex in enumerate(art.icl_examples)
    )
    return (
        f'<p class="lead">{_words(prompt)} words, ≈{approx_tokens(prompt)} tokens. '
        f"<code>with_alignment</code> puts this system prompt first and the {art.icl_k} most similar of the "
        f"{len(art.icl_examples)} ICL examples before the conversation.</p>"
        f'<pre class="prompt final">{_e(prompt)}</pre>'
        f"<h3>ICL examples ({len(art.icl_examples)})</h3>{examples or _empty('No ICL examples.')}"
    )


def _estimate_cell(mean: float | None, low: float | None, high: float | None, best: bool) -> str:
    if mean is None:
        return '<td class="num">–</td>'
    interval = f"[{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else ""
    style = f"background:{_reward_color(mean)}33"
    mark = " best" if best else ""
    return f'<td class="num{mark}" style="{style}"><b>{_fmt(mean)}</b><small>{_e(interval)}</small></td>'


def _evaluation_chart(report: EvaluationReport) -> str:
    setups = [s for s in report.setups if s.overall.mean is not None]
    if not setups:
        return ""
    width, label_w, right, row_h, top = 820.0, 110.0, 170.0, 34.0, 10.0
    bar_w = width - label_w - right

    def x(value: float) -> float:
        return label_w + bar_w * (min(max(value, 1.0), 5.0) - 1.0) / 4.0

    height = top + row_h * len(setups) + 24
    parts: list[str] = []
    for tick in range(1, 6):
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{height - 22:.1f}" stroke="{GRID}"/>'
        )
        parts.append(_text(x(tick), height - 6, str(tick), anchor="middle"))
    for i, setup in enumerate(setups):
        est = setup.overall
        y = top + i * row_h
        mean = est.mean if est.mean is not None else 1.0
        color = PURPLE if setup.name == report.reference else BLUE
        parts.append(
            _text(label_w - 10, y + 19, setup.name, anchor="end", fill=INK, extra='font-weight="600"')
        )
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y + 6:.1f}" width="{max(x(mean) - label_w, 1):.1f}" '
            f'height="{row_h - 14:.1f}" rx="4" fill="{color}" fill-opacity="0.85">'
            f"<title>{_e(setup.name)}: {_e(est.format())}</title></rect>"
        )
        if est.low is not None and est.high is not None:
            cy = y + row_h / 2 - 1
            parts.append(
                f'<path d="M{x(est.low):.1f},{cy:.1f} H{x(est.high):.1f} M{x(est.low):.1f},{cy - 6:.1f} '
                f'V{cy + 6:.1f} M{x(est.high):.1f},{cy - 6:.1f} V{cy + 6:.1f}" stroke="{INK}" stroke-width="1.6" fill="none"/>'
            )
        parts.append(_text(label_w + bar_w + 12, y + 19, est.format(), fill=INK))
    return _svg(width, height, "".join(parts), "Overall mean score per setup")


def _evaluation_section(report: EvaluationReport) -> str:
    level = round(100 * float(report.bootstrap.get("confidence", 0.95)))
    best: dict[str, float] = {}
    for aspect in [*report.aspects, "overall"]:
        values = [(s.overall if aspect == "overall" else s.aspects.get(aspect)) for s in report.setups]
        found = [v.mean for v in values if v is not None and v.mean is not None]
        if found:
            best[aspect] = max(found)
    rows = []
    for setup in report.setups:
        cells = []
        for aspect in report.aspects:
            est = setup.aspects.get(aspect)
            if est is None:
                cells.append('<td class="num">–</td>')
            else:
                cells.append(
                    _estimate_cell(
                        est.mean, est.low, est.high, est.mean is not None and est.mean == best.get(aspect)
                    )
                )
        o = setup.overall
        cells.append(
            _estimate_cell(o.mean, o.low, o.high, o.mean is not None and o.mean == best.get("overall"))
        )
        ref = ' <span class="badge best">reference</span>' if setup.name == report.reference else ""
        fails = f' <span class="badge fail">{setup.failures} failed</span>' if setup.failures else ""
        rows.append(
            f'<tr><th title="{_e(setup.system_prompt)}">{_e(setup.name)}{ref}{fails}</th>{"".join(cells)}</tr>'
        )
    head = "".join(f"<th>{_e(a)}</th>" for a in report.aspects)
    summary = (
        f'<p class="lead">Mean scores (1–5) with {level}% bootstrap intervals over {len(report.records)} '
        f"held-out queries.</p>{_evaluation_chart(report)}"
        f'<div class="scroll"><table class="data scores"><thead><tr><th>setup</th>{head}<th>overall</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    pairwise = ""
    if report.win_rates:
        lines = []
        for rate in report.win_rates:
            judged = max(rate.wins + rate.ties + rate.losses, 1)
            segments = []
            offset = 0.0
            for count, color, name in (
                (rate.wins, SCORE_COLORS[5], "wins"),
                (rate.ties, "#c5cad3", "ties"),
                (rate.losses, SCORE_COLORS[1], "losses"),
            ):
                w = 240.0 * count / judged
                if count:
                    segments.append(
                        f'<rect class="mark" x="{offset:.1f}" y="2" width="{w:.1f}" height="16" fill="{color}">'
                        f"<title>{count} {name}</title></rect>"
                    )
                offset += w
            bar = _svg(240, 20, "".join(segments), f"{report.reference} vs {rate.opponent}", fixed=True)
            lines.append(
                f"<tr><td>{_e(rate.opponent)}</td><td>{bar}</td><td>{rate.wins}</td><td>{rate.ties}</td>"
                f"<td>{rate.losses}</td><td>{rate.inconsistent}</td><td><b>{_e(rate.win_rate.format())}</b></td></tr>"
            )
        pairwise = (
            f"<h3>Pairwise: {_e(report.reference or '')} against each setup</h3>"
            '<p class="lead small">Each query judged twice with the answers swapped; a win needs both orders.</p>'
            + _legend([("wins", SCORE_COLORS[5]), ("ties", "#c5cad3"), ("losses", SCORE_COLORS[1])])
            + '<table class="data"><thead><tr><th>opponent</th><th></th><th>wins</th><th>ties</th><th>losses</th>'
            f"<th>inconsistent</th><th>win rate</th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
        )
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in report.notes)
    models = ", ".join(f"{_e(r)}: {_e(m)}" for r, m in sorted(report.models.items()))
    return summary + pairwise + notes + (f'<p class="muted small">Models: {models}</p>' if models else "")


def _icl_section(view: _View) -> str:
    rows = []
    for rec in view.artifact.icl_optimization:
        status = "rewritten" if rec.improved else "original kept"
        rows.append(
            f"<tr><td><code>{_e(rec.example_id)}</code></td><td>{_e(rec.query[:120])}</td>"
            f"<td>{_fmt(rec.initial_reward)} → {_fmt(rec.best_reward)}</td><td>{len(rec.rounds)}</td>"
            f"<td>{_e(status)}</td><td>{_e(rec.error or rec.stop_reason)}</td></tr>"
        )
    return (
        '<table class="data"><thead><tr><th>example</th><th>query</th><th>reward</th><th>rounds</th>'
        f"<th>result</th><th>stopped</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _notes_section(view: _View, warnings: Sequence[str]) -> str:
    art = view.artifact
    notes = "".join(
        f'<li class="{"sim-note" if n.upper().startswith("SIMULATION") else ""}">{_e(n)}</li>'
        for n in [*art.notes, *warnings]
    )
    failures = [(lv.level, f) for lv in art.levels for f in lv.failures]
    if failures:
        body = "".join(f"<tr><td>{level}</td><td>{_e(message)}</td></tr>" for level, message in failures)
        fail_html = (
            '<table class="data"><thead><tr><th>level</th><th>failure (recorded, never scored)</th></tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
    else:
        fail_html = '<p class="ok">No failures recorded: every model call returned a valid result.</p>'
    return (
        f'<h3>Notes</h3><ul class="notes">{notes or "<li>No notes.</li>"}</ul>'
        f"<h3>Failures ({len(failures)})</h3>{fail_html}"
    )


def _config_section(view: _View) -> str:
    config = json.dumps(view.artifact.config, indent=2, sort_keys=True, default=str)
    return (
        f"<details><summary>DRPOConfig of this run ({len(view.artifact.config)} settings)</summary>"
        f'<pre class="config">{_e(config)}</pre></details>'
    )


# --------------------------------------------------------------------------------------------
# Style and script (the script is allowed by its hash in the page's Content-Security-Policy)
# --------------------------------------------------------------------------------------------

_CSS = """
:root{--bg:#f4f6fb;--card:#fff;--ink:#1d2433;--muted:#667085;--line:#e4e7ee;--blue:#3b6fd8;--purple:#7c3aed}
*{box-sizing:border-box}
html{scroll-behavior:smooth}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
code{font-size:.92em;background:rgba(59,111,216,.08);padding:1px 5px;border-radius:5px}
header.top{background:linear-gradient(120deg,#172140 0%,#2b4488 55%,#3b6fd8 100%);color:#fff;padding:30px 0 58px}
header.top code{background:rgba(255,255,255,.14);color:#fff}
.wrap,main{max-width:1220px;margin:0 auto;padding:0 32px}
.eyebrow{text-transform:uppercase;letter-spacing:.12em;font-size:12px;opacity:.75}
h1{margin:6px 0 4px;font-size:30px;font-weight:700}
.meta{opacity:.85;font-size:14px}
.chips{margin-top:14px;display:flex;flex-wrap:wrap;gap:8px}
.chip{background:rgba(255,255,255,.13);border:1px solid rgba(255,255,255,.22);border-radius:999px;padding:3px 12px;font-size:13px}
.chip b{opacity:.8;font-weight:600;margin-right:4px}
main{padding-bottom:40px}
nav.toc{display:flex;flex-wrap:wrap;gap:6px;margin:18px 0 0}
nav.toc a{color:#fff;text-decoration:none;font-size:13px;background:rgba(255,255,255,.14);padding:4px 12px;border-radius:999px}
nav.toc a:hover{background:rgba(255,255,255,.28)}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin:-36px 0 18px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:14px 18px;box-shadow:0 6px 18px rgba(23,33,64,.08)}
.kpi .l{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.06em}
.kpi .v{font-size:27px;font-weight:700;margin:2px 0}
.kpi .s{color:var(--muted);font-size:12.5px}
.sim{background:#fff7e6;border:1px solid #f3c26b;color:#6b4300;border-radius:12px;padding:12px 16px;margin:0 0 18px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:16px;padding:22px 26px;margin:0 0 20px;box-shadow:0 1px 3px rgba(16,24,40,.05)}
h2{margin:0 0 6px;font-size:20px}
h3{margin:18px 0 6px;font-size:15.5px}
.grid2 h3{margin-top:4px}
.lead{color:var(--muted);margin:0 0 12px}
.small{font-size:13px}
.muted{color:var(--muted);font-weight:400}
.empty{color:var(--muted);font-style:italic}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:28px}
@media (max-width:960px){.grid2{grid-template-columns:1fr}}
svg.chart{display:block;max-width:100%;height:auto;overflow:visible}
.scroll{overflow-x:auto}
#tree-scroll{max-height:85vh;overflow:auto;border-radius:10px}
.scroll svg.chart{max-width:none}
.scroll.fit svg.chart{max-width:100%;height:auto}
button.fit-toggle{font:inherit;font-size:12.5px;border:1px solid var(--line);background:#fff;border-radius:8px;padding:3px 10px;cursor:pointer;color:var(--ink);margin-left:auto}
.legend{display:flex;flex-wrap:wrap;gap:16px;font-size:12.5px;color:var(--muted);margin:0 0 8px}
.legend span{display:inline-flex;align-items:center;gap:6px}
.legend-box{display:inline-block;width:12px;height:12px;border-radius:3px}
.legend-line{display:inline-block;width:20px;height:3px;border-radius:2px}
.legend-dot{display:inline-block;width:34px;height:10px;border-radius:5px}
.legend-ring{display:inline-block;width:12px;height:12px;border-radius:50%;border:2px solid var(--ink)}
g.node{cursor:pointer;outline:none}
g.node:hover circle,g.node:focus circle{filter:drop-shadow(0 0 3px rgba(59,111,216,.9))}
g.node.selected text{text-decoration:underline}
.panel{border:1px solid var(--line);border-radius:12px;padding:14px 18px;margin:14px 0;background:#fbfcfe}
.cand-head{font-size:15px;margin-bottom:6px}
.hist{color:var(--muted);font-size:13px;margin-bottom:8px}
.pill{display:inline-block;border-radius:999px;padding:0 8px;margin:0 3px 2px 0;font-size:12px;color:#1d2433;font-weight:600}
.badge{display:inline-block;border-radius:6px;padding:0 7px;font-size:11.5px;font-weight:600;margin-left:4px;vertical-align:1px}
.badge.best{background:#ede4ff;color:#5b21b6}.badge.path{background:#f3edff;color:#6d28d9}
.badge.beam{background:#e3ecfd;color:#1e4fb5}.badge.carried{background:#eef1f6;color:#475467}
.badge.fail{background:#fde2e0;color:#b42318}
pre.prompt,pre.answer,pre.config{white-space:pre-wrap;word-break:break-word;background:#f7f8fb;border:1px solid var(--line);border-radius:10px;padding:12px 16px;font-size:13px;line-height:1.55;margin:6px 0}
pre.prompt.final{background:#f6f3ff;border-color:#d9ccff;font-size:14px;padding:16px 20px}
pre.answer{background:#fff;max-height:320px;overflow:auto}
details{margin:6px 0}
summary{cursor:pointer;padding:4px 0}
details.eval summary{font-size:13.5px}
details.eval .q{font-weight:600;margin:6px 0}
ul.rationale{font-size:13px;color:#344054;margin:4px 0 10px}
details.icl{border:1px solid var(--line);border-radius:10px;padding:6px 14px;margin:8px 0;background:#fff}
details.icl summary{font-weight:500}
.tag{display:inline-block;font-size:11.5px;font-weight:700;border-radius:6px;padding:0 7px;background:#eef1f6;color:#475467;margin-right:4px}
.tag.del{background:#fde2e0;color:#b42318}.tag.ins{background:#dcfae6;color:#067647}.tag.moved{background:#e3ecfd;color:#1e4fb5}
table.diff td.moved{background:#f0f5ff;color:#344054}
.moved-tag{float:right;font:600 10.5px system-ui,sans-serif;color:#1e4fb5;background:#dbe6fd;border-radius:5px;padding:0 6px;margin-left:6px}
details.diffblock{border:1px solid var(--line);border-radius:12px;padding:6px 14px;margin:10px 0}
details.diffblock summary{font-size:14.5px}
.diffcols{display:grid;grid-template-columns:1fr 1fr;gap:8px;font-size:12px;color:var(--muted);margin:6px 0 2px;text-transform:uppercase;letter-spacing:.05em}
table.diff{width:100%;border-collapse:separate;border-spacing:8px 2px;table-layout:fixed;font:13px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin-left:-8px;width:calc(100% + 16px)}
table.diff td{vertical-align:top;padding:3px 8px;border-radius:6px;white-space:pre-wrap;word-break:break-word}
table.diff td.eq{background:#f7f8fb;color:#475467}
table.diff td.del{background:#fff1f0}
table.diff td.ins{background:#ecfdf3}
table.diff td.none{background:repeating-linear-gradient(135deg,#fafbfc,#fafbfc 6px,#f1f3f7 6px,#f1f3f7 12px)}
del{background:#fccfcb;color:#7a1a12;text-decoration:line-through;text-decoration-color:rgba(122,26,18,.5);border-radius:3px}
ins{background:#b7ebc6;color:#05502f;text-decoration:none;border-radius:3px}
table.data{border-collapse:collapse;width:100%;font-size:13.5px;margin:10px 0}
table.data th,table.data td{border-bottom:1px solid var(--line);padding:6px 10px;text-align:left;vertical-align:top}
table.data thead th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
table.data.compact{margin-top:14px;font-size:12.5px}
table.data.compact td{white-space:nowrap}
table.scores td.num{text-align:center;white-space:nowrap}
table.scores td.num small{display:block;color:var(--muted);font-size:11px}
table.scores td.best b{text-decoration:underline;text-decoration-thickness:2px}
p.note{background:#fff7e6;border-left:4px solid #f3c26b;padding:8px 12px;border-radius:6px;font-size:13.5px}
ul.notes li{margin:4px 0}
ul.notes li.sim-note{color:#6b4300}
p.ok{color:#067647}
footer{color:var(--muted);text-align:center;font-size:12.5px;padding:10px 0 30px}
"""

_SCRIPT = """
(function () {
  var details = document.querySelectorAll('.cand-detail');
  var nodes = document.querySelectorAll('g.node[data-cand]');
  function show(key) {
    details.forEach(function (d) { d.hidden = d.id !== 'cand-' + key; });
    nodes.forEach(function (n) { n.classList.toggle('selected', n.getAttribute('data-cand') === key); });
  }
  nodes.forEach(function (node) {
    var key = node.getAttribute('data-cand');
    node.addEventListener('click', function () { show(key); });
    node.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); show(key); }
    });
  });
  var fit = document.getElementById('tree-fit');
  var scroller = document.getElementById('tree-scroll');
  if (fit && scroller) {
    fit.addEventListener('click', function () {
      var on = scroller.classList.toggle('fit');
      fit.textContent = on ? 'Actual size' : 'Fit to width';
    });
  }
  var charts = Array.prototype.filter.call(document.querySelectorAll('svg.chart'), function (svg) {
    return svg.querySelector('.mark') !== null;
  });
  var drawn = 0;
  charts.forEach(function (svg) {
    var marks = svg.querySelectorAll('.mark');
    var visible = 0;
    marks.forEach(function (mark) {
      var box = mark.getBBox();
      if (box.width > 0 || box.height > 0) { visible += 1; }
    });
    var outer = svg.getBoundingClientRect();
    if (visible > 0 && outer.width > 0 && outer.height > 0) { drawn += 1; }
  });
  document.body.setAttribute('data-charts', String(charts.length));
  document.body.setAttribute('data-charts-drawn', String(drawn));
})();
"""
