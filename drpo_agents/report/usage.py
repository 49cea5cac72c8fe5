"""The aspects section (score distribution, selection frequency) and tokens and prompt size."""

from __future__ import annotations

import math
from collections import Counter

from drpo_agents.prompts import approx_tokens
from drpo_agents.report.draw import (
    BLUE,
    GRID,
    INK,
    ORANGE,
    PURPLE,
    SCORE_COLORS,
    empty_note,
    esc,
    legend_html,
    nice_step,
    svg_frame,
    svg_text,
    word_count,
)
from drpo_agents.report.view import View


def _aspect_distribution_chart(view: View) -> str:
    counts: dict[str, Counter[int]] = {}
    for record in view.artifact.evaluations:
        if record.error is not None:
            continue
        for item in record.scores:
            counts.setdefault(item.aspect, Counter())[item.score] += 1
    if not counts:
        return empty_note("No scores recorded.")
    order = sorted(counts, key=lambda a: (-sum(counts[a].values()), a.casefold()))
    width, label_w, right, row_h, top = 560.0, 130.0, 120.0, 30.0, 8.0
    bar_w = width - label_w - right
    parts: list[str] = []
    for i, aspect in enumerate(order):
        y = top + i * row_h
        total = sum(counts[aspect].values())
        mean = sum(s * n for s, n in counts[aspect].items()) / total
        parts.append(svg_text(label_w - 10, y + 15, aspect, anchor="end", fill=INK))
        x = label_w
        for score in range(1, 6):
            n = counts[aspect].get(score, 0)
            if not n:
                continue
            w = bar_w * n / total
            parts.append(
                f'<rect class="mark" x="{x:.1f}" y="{y + 3:.1f}" width="{w:.1f}" height="{row_h - 8:.1f}" '
                f'fill="{SCORE_COLORS[score]}"><title>{esc(aspect)}: score {score} × {n}</title></rect>'
            )
            if w >= 18:
                parts.append(
                    svg_text(
                        x + w / 2, y + 18, str(n), anchor="middle", fill="#1d2433", extra='font-size="11"'
                    )
                )
            x += w
        parts.append(svg_text(label_w + bar_w + 10, y + 15, f"mean {mean:.2f} · n={total}"))
    legend = legend_html([(f"score {s}", SCORE_COLORS[s]) for s in range(1, 6)])
    return legend + svg_frame(
        width, top + row_h * len(order) + 6, "".join(parts), "Score distribution per aspect"
    )


def _aspect_frequency_chart(view: View) -> str:
    per_query: dict[str, set[str]] = {}
    for record in view.artifact.evaluations:
        chosen = record.aspects or [s.aspect for s in record.scores]
        per_query.setdefault(record.query_id, set()).update(chosen)
    freq: Counter[str] = Counter(a for chosen in per_query.values() for a in chosen)
    if not freq:
        return empty_note("No aspect selections recorded.")
    queries = len(per_query)
    order = sorted(freq, key=lambda a: (-freq[a], a.casefold()))
    width, label_w, right, row_h, top = 560.0, 130.0, 110.0, 28.0, 8.0
    bar_w = width - label_w - right
    parts: list[str] = []
    for i, aspect in enumerate(order):
        y = top + i * row_h
        w = bar_w * freq[aspect] / queries
        parts.append(svg_text(label_w - 10, y + 15, aspect, anchor="end", fill=INK))
        parts.append(
            f'<rect x="{label_w}" y="{y + 4:.1f}" width="{bar_w:.1f}" height="{row_h - 10:.1f}" rx="4" fill="#eef1f6"/>'
        )
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y + 4:.1f}" width="{max(w, 2):.1f}" height="{row_h - 10:.1f}" '
            f'rx="4" fill="{BLUE}"><title>{esc(aspect)}: chosen for {freq[aspect]} of {queries} queries</title></rect>'
        )
        parts.append(svg_text(label_w + bar_w + 10, y + 15, f"{freq[aspect]} / {queries} queries"))
    return svg_frame(width, top + row_h * len(order) + 6, "".join(parts), "Selected-aspect frequencies")


def aspects_section(view: View) -> str:
    return (
        '<div class="grid2"><div><h3>Score distribution per aspect</h3>'
        '<p class="lead small">Every judged answer of every candidate, by score.</p>'
        f"{_aspect_distribution_chart(view)}</div>"
        "<div><h3>Which aspects the judge chose</h3>"
        '<p class="lead small">The dynamic reward picks the aspects that matter for each query.</p>'
        f"{_aspect_frequency_chart(view)}</div></div>"
    )


def _usage_chart(view: View) -> str:
    usage = view.artifact.usage
    if not usage:
        return empty_note("No token usage recorded.")
    roles = sorted(usage, key=lambda r: (-usage[r].total_tokens, r))
    most = max(max(usage[r].total_tokens for r in roles), 1)
    width, label_w, right, row_h, top = 560.0, 90.0, 150.0, 34.0, 8.0
    bar_w = width - label_w - right
    parts: list[str] = []
    for i, role in enumerate(roles):
        u = usage[role]
        y = top + i * row_h
        w_in, w_out = bar_w * u.input_tokens / most, bar_w * u.output_tokens / most
        parts.append(svg_text(label_w - 10, y + 17, role, anchor="end", fill=INK))
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y + 5:.1f}" width="{max(w_in, 1):.1f}" height="{row_h - 12:.1f}" '
            f'fill="{BLUE}"><title>{esc(role)}: {u.input_tokens:,} input tokens</title></rect>'
        )
        parts.append(
            f'<rect class="mark" x="{label_w + w_in:.1f}" y="{y + 5:.1f}" width="{max(w_out, 1):.1f}" '
            f'height="{row_h - 12:.1f}" fill="{ORANGE}"><title>{esc(role)}: {u.output_tokens:,} output tokens</title></rect>'
        )
        parts.append(
            svg_text(label_w + w_in + w_out + 8, y + 17, f"{u.total_tokens:,} tok · {u.calls} calls")
        )
    legend = legend_html([("input tokens", BLUE), ("output tokens", ORANGE)])
    rows = "".join(
        f"<tr><td>{esc(role)}</td><td>{esc(view.artifact.models.get(role, '–'))}</td><td>{usage[role].calls:,}</td>"
        f"<td>{usage[role].input_tokens:,}</td><td>{usage[role].output_tokens:,}</td>"
        f"<td>{usage[role].total_tokens:,}</td></tr>"
        for role in roles
    )
    table = (
        '<table class="data compact"><thead><tr><th>role</th><th>model</th><th>calls</th><th>input</th>'
        f"<th>output</th><th>total</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return (
        legend
        + svg_frame(width, top + row_h * len(roles) + 4, "".join(parts), "Token usage per role")
        + table
    )


def _prompt_size_chart(view: View) -> str:
    points = [(level, view.by_id[cid].prompt) for level, cid in view.best_per_level]
    if not points:
        return empty_note("No levels were recorded.")
    width, height = 560.0, 250.0
    left, right, top, bottom = 44.0, 12.0, 30.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max(max(word_count(p) for _, p in points), 1)
    step_size = max(1.0, nice_step(most * 1.12))
    scale_top = step_size * math.ceil(most * 1.12 / step_size)
    n_ticks = round(scale_top / step_size)
    slot = plot_w / len(points)
    bar = min(44.0, slot * 0.7)
    parts: list[str] = []
    for tick in range(n_ticks + 1):
        value = step_size * tick
        y = top + plot_h - plot_h * value / scale_top
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(svg_text(left - 8, y + 4, f"{value:.0f}", anchor="end"))
    step = max(1, math.ceil(len(points) / 20))
    for i, (level, prompt) in enumerate(points):
        words = word_count(prompt)
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
                svg_text(x + bar / 2, y - 5, str(words), anchor="middle", fill=INK, extra='font-size="11"')
            )
            parts.append(svg_text(x + bar / 2, top + plot_h + 16, str(level), anchor="middle"))
    parts.append(svg_text(left + plot_w / 2, height - 4, "level", anchor="middle"))
    parts.append(svg_text(4, 12, "words"))
    return svg_frame(width, height, "".join(parts), "Prompt size per level")


def cost_section(view: View) -> str:
    sizes = [(lv, view.by_id[cid].prompt) for lv, cid in view.best_per_level]
    size_note = ""
    if sizes:
        first, last = sizes[0][1], sizes[-1][1]
        size_note = (
            f'<p class="lead small">Best prompt: {word_count(first)} → {word_count(last)} words '
            f"(≈{approx_tokens(first)} → ≈{approx_tokens(last)} tokens at 4 characters a token).</p>"
        )
    return (
        '<div class="grid2"><div><h3>Token usage per role</h3>'
        f"{_usage_chart(view)}</div><div><h3>Size of the best prompt per level</h3>{size_note}"
        f"{_prompt_size_chart(view)}</div></div>"
    )
