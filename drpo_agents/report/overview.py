"""The page header, headline numbers, simulation banner and the reward-per-level chart."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from drpo_agents.report.draw import (
    BLUE,
    GREY,
    GRID,
    MUTED,
    ORANGE,
    empty_note,
    esc,
    fmt_num,
    legend_html,
    sentence,
    svg_frame,
    svg_text,
)
from drpo_agents.report.view import View


def header_html(view: View, nav: str) -> str:
    art = view.artifact
    models = "".join(
        f'<span class="chip"><b>{esc(role)}</b> {esc(identity)}</span>'
        for role, identity in sorted(art.models.items())
    )
    return (
        '<header class="top"><div class="wrap">'
        '<div class="eyebrow">DRPO · dynamic rewarding with prompt optimisation</div>'
        f"<h1>Run <code>{esc(art.run_id)}</code></h1>"
        f'<div class="meta">created {esc(art.created_at)} · source {esc(art.source)} · '
        f"best candidate <code>{esc(art.best_candidate_id or '–')}</code></div>"
        f'<div class="chips">{models}</div><nav class="toc">{nav}</nav></div></header>'
    )


def kpis_html(view: View) -> str:
    art = view.artifact
    curve = art.reward_curve()
    initial = next((lv.level_rewards[0] for lv in art.levels if lv.level_rewards), None)
    last = next((lv.level_rewards[0] for lv in reversed(art.levels) if lv.level_rewards), None)
    calls = sum(u.calls for u in art.usage.values())
    tokens = sum(u.total_tokens for u in art.usage.values())
    items = [
        ("best mean reward", fmt_num(curve[-1] if curve else None), "over the best candidate's levels"),
        ("initial → last level", f"{fmt_num(initial)} → {fmt_num(last)}", "reward on each level's queries"),
        ("levels", str(len(art.levels)), f"{len(art.candidates)} candidates"),
        ("evaluations", str(len(art.evaluations)), f"{sum(1 for e in art.evaluations if e.error)} failed"),
        ("model calls", f"{calls:,}", f"{tokens:,} tokens"),
    ]
    if sources := art.lesson_sources():
        earlier = sum(n for run, n in sources.items() if run != art.run_id)
        runs = ", ".join(sorted(run for run in sources if run != art.run_id)) or "none"
        items.append(
            ("lessons recalled", str(sum(sources.values())), f"{earlier} from earlier runs ({runs})")
        )
    cells = "".join(
        f'<div class="kpi"><div class="l">{esc(label)}</div><div class="v">{esc(value)}</div>'
        f'<div class="s">{esc(sub)}</div></div>'
        for label, value, sub in items
    )
    return f'<div class="kpis">{cells}</div>'


def simulation_banner(view: View) -> str:
    notes = [n for n in view.artifact.notes if n.upper().startswith("SIMULATION")]
    if not notes:
        return ""
    return (
        '<div class="sim"><b>Simulation.</b> '
        + " ".join(esc(sentence(n.split(":", 1)[1] if ":" in n else n)) for n in notes)
        + " Nothing in this report says anything about a real model.</div>"
    )


@dataclass(frozen=True)
class _Plot:
    """The reward chart's geometry: levels ``first..last`` across, rewards 1-5 up."""

    first: int
    last: int
    width: float = 820.0
    height: float = 330.0
    left: float = 46.0
    top: float = 16.0
    plot_w: float = 820.0 - 46.0 - 78.0
    plot_h: float = 330.0 - 16.0 - 40.0

    def x(self, level: float) -> float:
        span = max(self.last - self.first, 1)
        return self.left + (
            self.plot_w / 2 if self.last == self.first else (level - self.first) / span * self.plot_w
        )

    def y(self, value: float) -> float:
        return self.top + (5.0 - min(max(value, 1.0), 5.0)) / 4.0 * self.plot_h


def _axes(plot: _Plot) -> list[str]:
    parts: list[str] = []
    left, top, plot_w, plot_h = plot.left, plot.top, plot.plot_w, plot.plot_h
    for tick in range(1, 6):
        y = plot.y(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(svg_text(left - 10, y + 4, str(tick), anchor="end"))
    step = max(1, math.ceil((plot.last - plot.first + 1) / 20))
    for level in range(plot.first, plot.last + 1, step):
        parts.append(svg_text(plot.x(level), top + plot_h + 18, str(level), anchor="middle"))
    parts.append(svg_text(left + plot_w / 2, plot.height - 4, "level", anchor="middle"))
    parts.append(
        svg_text(
            12,
            top + plot_h / 2,
            "reward (1–5)",
            anchor="middle",
            extra=f'transform="rotate(-90 12 {top + plot_h / 2:.1f})"',
        )
    )
    return parts


def _level_marks(plot: _Plot, view: View) -> list[str]:
    """Skipped levels, then every evaluated candidate (spread sideways so equal rewards stay visible)."""
    parts = [
        f'<text x="{plot.x(lv.level):.1f}" y="{plot.top + plot.plot_h - 6:.1f}" text-anchor="middle" '
        f'fill="{MUTED}" font-size="13">↻<title>level {lv.level}: every beam candidate already scored '
        "high and was carried unchanged</title></text>"
        for lv in view.artifact.levels
        if lv.skipped
    ]
    seen: Counter[tuple[int, float]] = Counter()
    for level, cid, reward in view.level_points:
        nth = seen[(level, round(reward, 2))]
        seen[(level, round(reward, 2))] += 1
        dx = (nth % 2 * 2 - 1) * math.ceil(nth / 2) * 5.0 if nth else 0.0
        parts.append(
            f'<circle class="mark" cx="{plot.x(level) + dx:.1f}" cy="{plot.y(reward):.1f}" r="4" '
            f'fill="{GREY}" fill-opacity="0.55"><title>{esc(cid)} at level {level}: {fmt_num(reward)}'
            "</title></circle>"
        )
    return parts


def _series(plot: _Plot, name: str, color: str, points: list[tuple[int, float]], dash: str) -> list[str]:
    if not points:
        return []
    x, y = plot.x, plot.y
    d = " ".join(f"{'M' if i == 0 else 'L'}{x(at):.1f},{y(v):.1f}" for i, (at, v) in enumerate(points))
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    parts = [
        f'<path class="mark" d="{d}" fill="none" stroke="{color}" stroke-width="2.6" '
        f'stroke-linejoin="round"{dash_attr}><title>{esc(name)}</title></path>'
    ]
    for at, v in points:
        parts.append(
            f'<circle class="mark" cx="{x(at):.1f}" cy="{y(v):.1f}" r="4.5" fill="#fff" stroke="{color}" '
            f'stroke-width="2.4"><title>{esc(name)}, level {at}: {fmt_num(v)}</title></circle>'
        )
    at, v = points[-1]
    parts.append(
        svg_text(
            max(x(at) + 12, plot.left + plot.plot_w + 26),
            y(v) + 4,
            fmt_num(v),
            fill=color,
            extra='font-weight="700"',
        )
    )
    return parts


def reward_chart(view: View) -> str:
    levels = view.artifact.levels
    if not levels:
        return empty_note("No levels were recorded.")
    first, last = levels[0].level, levels[-1].level
    for point_level, _, _ in view.level_points:
        first, last = min(first, point_level), max(last, point_level)
    plot = _Plot(first, last)
    parts = [*_axes(plot), *_level_marks(plot, view)]
    parts += _series(
        plot,
        "best reward on the level's queries",
        ORANGE,
        [(lv.level, lv.level_rewards[0]) for lv in levels if lv.level_rewards],
        "6 4",
    )
    parts += _series(
        plot,
        "best mean reward (history)",
        BLUE,
        [(lv.level, lv.beam_mean_rewards[0]) for lv in levels if lv.beam_mean_rewards],
        "",
    )
    return svg_frame(plot.width, plot.height, "".join(parts), "Reward per level")


def rewards_section(view: View) -> str:
    legend = legend_html(
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
            f"<tr><td>{lv.level}</td><td>{esc(', '.join(lv.query_ids))}</td><td><code>{esc(best)}</code></td>"
            f"<td>{fmt_num(lv.level_rewards[0] if lv.level_rewards else None)}</td>"
            f"<td>{fmt_num(lv.beam_mean_rewards[0] if lv.beam_mean_rewards else None)}</td>"
            f"<td>{lv.depth_limit}</td><td>{esc(note)}</td></tr>"
        )
    table = (
        '<details><summary>Per-level table</summary><table class="data"><thead><tr><th>level</th>'
        "<th>queries</th><th>best</th><th>level reward</th><th>mean reward</th><th>depth limit</th>"
        f"<th>note</th></tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
    )
    return (
        '<p class="lead">Each level scores new candidates on new queries; the beam keeps the best by their '
        "mean reward over all levels so far.</p>"
        f"{legend}{reward_chart(view)}{table}"
    )
