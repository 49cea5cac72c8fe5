"""The final prompt, held-out evaluation, ICL stage, trust, notes and configuration sections."""

from __future__ import annotations

import json
from collections.abc import Sequence

from drpo_agents.artifact import AlignmentArtifact
from drpo_agents.evaluation import EvaluationReport
from drpo_agents.prompts import approx_tokens
from drpo_agents.report.draw import (
    BLUE,
    GRID,
    INK,
    PURPLE,
    SCORE_COLORS,
    earlier_turns,
    empty_note,
    esc,
    fmt_num,
    legend_html,
    reward_color,
    svg_frame,
    svg_text,
    word_count,
)
from drpo_agents.report.view import View


def trust_section(view: View) -> str:
    """Length bias, jury disagreement, validation and the acceptance gate's decisions."""
    art = view.artifact
    overall = art.length_reward_correlation()
    within = art.within_query_length_correlation()
    adjusted = art.within_query_length_correlation(adjusted=True)
    slopes = [lv.length_slope for lv in art.levels if lv.length_slope is not None]
    parts = [
        "<h3>Answer length and reward</h3>",
        '<p class="lead small">Correlation of answer length with reward: '
        f"{fmt_num(overall)} over all answers, {fmt_num(within)} among answers to the same query "
        f"(what the search compares), {fmt_num(adjusted)} after length normalisation (slope estimated on "
        "the other levels). A clearly positive within-query value means longer answers win."
        + (
            f" This run ranked by the length-normalised reward (last slope {fmt_num(slopes[-1])} per unit "
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
            f'<p class="lead small">Judges: {esc(art.models.get("judge", ""))}'
            + (f"; jury: {esc(art.models['jury'])}" if "jury" in art.models else "")
            + ". Disagreement is the jurors' score range per aspect, averaged (0 = unanimous).</p>"
            '<div class="grid2"><table class="data"><thead><tr><th>level</th><th>mean disagreement</th>'
            "</tr></thead><tbody>"
            + "".join(f"<tr><td>{lvl}</td><td>{fmt_num(d)}</td></tr>" for lvl, d in disagreement)
            + '</tbody></table><table class="data"><thead><tr><th>most disputed candidates</th>'
            "<th>disagreement</th></tr></thead><tbody>"
            + "".join(
                f"<tr><td><code>{esc(c)}</code></td><td>{fmt_num(d)}</td></tr>" for c, d in by_candidate
            )
            + "</tbody></table></div>"
        )
    if art.validation:
        rows = "".join(
            f"<tr><td><code>{esc(v.candidate_id)}</code>{' (chosen)' if v.candidate_id == art.best_candidate_id else ''}"
            f"</td><td>{fmt_num(v.mean)}</td><td>{fmt_num(v.std)}</td><td>{fmt_num(v.safety)}</td><td>{v.failed}</td>"
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
            f"<tr><td>{d.level}</td><td><code>{esc(d.challenger_id or '–')}</code></td>"
            f"<td><code>{esc(d.incumbent_id)}</code></td><td>{fmt_num(d.mean_difference, 3)}</td>"
            f"<td>[{fmt_num(d.ci_low, 3)}, {fmt_num(d.ci_high, 3)}]</td>"
            f"<td>{fmt_num(d.incumbent_safety)} → {fmt_num(d.challenger_safety)}</td>"
            f'<td class="{"ok" if d.accepted else ""}">{"accepted" if d.accepted else "kept incumbent"}</td>'
            f"<td>{esc(d.reason)}</td></tr>"
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


def final_section(view: View) -> str:
    art = view.artifact
    prompt = art.system_prompt
    examples = "".join(
        f'<details class="icl"{" open" if i < 2 else ""}><summary><span class="tag">{esc(ex.id or f"#{i + 1}")}</span> '
        f'{esc(ex.query)}</summary>{earlier_turns(ex.history)}<pre class="answer">{esc(ex.answer)}</pre></details>'
        for i, ex in enumerate(art.icl_examples)
    )
    return (
        f'<p class="lead">{word_count(prompt)} words, ≈{approx_tokens(prompt)} tokens. '
        f"<code>with_alignment</code> puts this system prompt first and the {art.icl_k} most similar of the "
        f"{len(art.icl_examples)} ICL examples before the conversation{_floor(art)}.</p>"
        f'<pre class="prompt final">{esc(prompt)}</pre>'
        f"<h3>ICL examples ({len(art.icl_examples)})</h3>{examples or empty_note('No ICL examples.')}"
    )


def _floor(art: AlignmentArtifact) -> str:
    retrieval = art.icl_retrieval
    return f" (only those with similarity ≥ {retrieval.min_similarity:.2f})" if retrieval is not None else ""


def _estimate_cell(mean: float | None, low: float | None, high: float | None, best: bool) -> str:
    if mean is None:
        return '<td class="num">–</td>'
    interval = f"[{fmt_num(low)}, {fmt_num(high)}]" if low is not None and high is not None else ""
    style = f"background:{reward_color(mean)}33"
    mark = " best" if best else ""
    return f'<td class="num{mark}" style="{style}"><b>{fmt_num(mean)}</b><small>{esc(interval)}</small></td>'


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
        parts.append(svg_text(x(tick), height - 6, str(tick), anchor="middle"))
    for i, setup in enumerate(setups):
        est = setup.overall
        y = top + i * row_h
        mean = est.mean if est.mean is not None else 1.0
        color = PURPLE if setup.name == report.reference else BLUE
        parts.append(
            svg_text(label_w - 10, y + 19, setup.name, anchor="end", fill=INK, extra='font-weight="600"')
        )
        parts.append(
            f'<rect class="mark" x="{label_w}" y="{y + 6:.1f}" width="{max(x(mean) - label_w, 1):.1f}" '
            f'height="{row_h - 14:.1f}" rx="4" fill="{color}" fill-opacity="0.85">'
            f"<title>{esc(setup.name)}: {esc(est.format())}</title></rect>"
        )
        if est.low is not None and est.high is not None:
            cy = y + row_h / 2 - 1
            parts.append(
                f'<path d="M{x(est.low):.1f},{cy:.1f} H{x(est.high):.1f} M{x(est.low):.1f},{cy - 6:.1f} '
                f'V{cy + 6:.1f} M{x(est.high):.1f},{cy - 6:.1f} V{cy + 6:.1f}" stroke="{INK}" stroke-width="1.6" fill="none"/>'
            )
        parts.append(svg_text(label_w + bar_w + 12, y + 19, est.format(), fill=INK))
    return svg_frame(width, height, "".join(parts), "Overall mean score per setup")


def evaluation_section(report: EvaluationReport) -> str:
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
            f'<tr><th title="{esc(setup.system_prompt)}">{esc(setup.name)}{ref}{fails}</th>{"".join(cells)}</tr>'
        )
    head = "".join(f"<th>{esc(a)}</th>" for a in report.aspects)
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
            bar = svg_frame(240, 20, "".join(segments), f"{report.reference} vs {rate.opponent}", fixed=True)
            lines.append(
                f"<tr><td>{esc(rate.opponent)}</td><td>{bar}</td><td>{rate.wins}</td><td>{rate.ties}</td>"
                f"<td>{rate.losses}</td><td>{rate.inconsistent}</td><td><b>{esc(rate.win_rate.format())}</b></td></tr>"
            )
        pairwise = (
            f"<h3>Pairwise: {esc(report.reference or '')} against each setup</h3>"
            '<p class="lead small">Each query judged twice with the answers swapped; a win needs both orders.</p>'
            + legend_html([("wins", SCORE_COLORS[5]), ("ties", "#c5cad3"), ("losses", SCORE_COLORS[1])])
            + '<table class="data"><thead><tr><th>opponent</th><th></th><th>wins</th><th>ties</th><th>losses</th>'
            f"<th>inconsistent</th><th>win rate</th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
        )
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in report.notes)
    models = ", ".join(f"{esc(r)}: {esc(m)}" for r, m in sorted(report.models.items()))
    return summary + pairwise + notes + (f'<p class="muted small">Models: {models}</p>' if models else "")


def icl_section(view: View) -> str:
    rows = []
    for rec in view.artifact.icl_optimization:
        status = "rewritten" if rec.improved else "original kept"
        rows.append(
            f"<tr><td><code>{esc(rec.example_id)}</code></td><td>{esc(rec.query[:120])}{earlier_turns(rec.history)}</td>"
            f"<td>{fmt_num(rec.initial_reward)} → {fmt_num(rec.best_reward)}</td><td>{len(rec.rounds)}</td>"
            f"<td>{esc(status)}</td><td>{esc(rec.error or rec.stop_reason)}</td></tr>"
        )
    return (
        '<table class="data"><thead><tr><th>example</th><th>query</th><th>reward</th><th>rounds</th>'
        f"<th>result</th><th>stopped</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def notes_section(view: View, warnings: Sequence[str]) -> str:
    art = view.artifact
    notes = "".join(
        f'<li class="{"sim-note" if n.upper().startswith("SIMULATION") else ""}">{esc(n)}</li>'
        for n in [*art.notes, *warnings]
    )
    failures = [(lv.level, f) for lv in art.levels for f in lv.failures]
    if failures:
        body = "".join(
            f"<tr><td>{level}</td><td>{esc(str(failure))}</td></tr>" for level, failure in failures
        )
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


def config_section(view: View) -> str:
    config = json.dumps(view.artifact.config, indent=2, sort_keys=True, default=str)
    return (
        f"<details><summary>DRPOConfig of this run ({len(view.artifact.config)} settings)</summary>"
        f'<pre class="config">{esc(config)}</pre></details>'
    )
