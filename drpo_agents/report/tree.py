"""The search-tree section: an SVG of every candidate and a detail panel per candidate."""

from __future__ import annotations

from drpo_agents.artifact import CandidateRecord
from drpo_agents.report.draw import (
    INK,
    PURPLE,
    earlier_turns,
    empty_note,
    esc,
    fmt_num,
    natural_key,
    reward_color,
    svg_frame,
    svg_text,
    word_count,
)
from drpo_agents.report.view import View


def _tree_layout(view: View) -> tuple[dict[str, float], int]:
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


def _node_label(cand: CandidateRecord, view: View) -> str:
    reward = "failed" if cand.id in view.failed else fmt_num(view.node_reward.get(cand.id))
    return f"{cand.id} {reward}" + (" ↻" if cand.carried else "")


def _tree_svg(view: View) -> str:
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
            f'<text x="{x:.1f}" y="18" text-anchor="start" fill="{INK}" font-weight="600">{esc(label)}'
            f"<title>{esc(label)}: {esc(queries.get(level, ''))}</title></text>"
        )
        parts.append(svg_text(x, 32, queries.get(level, ""), extra='font-size="10"'))
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
        fill = "#ffffff" if failed else reward_color(reward)
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
            f"reward here: {fmt_num(reward)} · mean: {fmt_num(cand.mean_reward)}"
            + (" · carried" if cand.carried else "")
            + f"\n\n{cand.prompt[:400]}{'…' if len(cand.prompt) > 400 else ''}"
        )
        parts.append(
            f'<g class="node mark" data-cand="{view.index[cand.id]}" tabindex="0" role="button">'
            f"<title>{esc(tip)}</title>{ring}"
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{2.4 if cand.id in path_set or failed else 1.6}"{dashed}/>{cross}'
            f'<text x="{x + radius + 6:.1f}" y="{y + 4:.1f}" fill="{INK}"{weight}>{esc(label)}</text></g>'
        )
    return svg_frame(width, height, "".join(parts), "Search tree", fixed=True)


def _candidate_detail(view: View, cand: CandidateRecord) -> str:
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
        f'<span class="pill" style="background:{reward_color(r)}">{fmt_num(r)}</span>' for r in cand.rewards
    )
    blocks = [
        f'<div class="cand-head"><b>{esc(cand.id)}</b> · level {cand.level} · parent '
        f"<code>{esc(cand.parent_id or '–')}</code> · mean {fmt_num(cand.mean_reward)} {''.join(badges)}</div>",
        f'<div class="hist">reward history {history or "–"}</div>',
        f'<pre class="prompt">{esc(cand.prompt)}</pre>',
    ]
    if cand.analysis:
        blocks.append(f"<p><b>Analysis.</b> {esc(cand.analysis)}</p>")
    if cand.thought:
        blocks.append(f"<p><b>Thought.</b> {esc(cand.thought)}</p>")
    if cand.lessons:
        blocks.append(
            "<details><summary>Lessons recalled from memory "
            f"({len(cand.lessons)})</summary><ul>"
            + "".join(
                f"<li>{esc(lesson)}{f' <small>(run {esc(run)})</small>' if run else ''}</li>"
                for lesson, run in zip(
                    cand.lessons, cand.lesson_runs or [""] * len(cand.lessons), strict=False
                )
            )
            + "</ul></details>"
        )
    for record in (r for r in view.artifact.evaluations if r.candidate_id == cand.id):
        scores = "".join(
            f'<span class="pill" style="background:{reward_color(float(s.score))}" title="{esc(s.rationale)}">'
            f"{esc(s.aspect)} {s.score}</span>"
            for s in record.scores
        )
        rationale = "".join(
            f"<li><b>{esc(s.aspect)} {s.score}</b>: {esc(s.rationale)}</li>" for s in record.scores
        )
        outcome = f"reward {fmt_num(record.reward)}" if record.error is None else f"failed: {record.error}"
        if record.disagreement is not None:
            outcome += f" · jury disagreement {fmt_num(record.disagreement)}"
        phase = " · validation" if record.phase == "validation" else ""
        jurors = "".join(
            f"<li>juror {i + 1}: "
            + (", ".join(f"{esc(s.aspect)} {s.score}" for s in juror) or "failed")
            + "</li>"
            for i, juror in enumerate(record.jury)
        )
        blocks.append(
            f'<details class="eval"><summary>Level {record.level}{phase} · {esc(record.query_id or "query")} · '
            f"{esc(outcome)} {scores}</summary>{earlier_turns(view.artifact.histories.get(record.query_id, []))}"
            f'<p class="q">{esc(record.query)}</p>'
            f'<pre class="answer">{esc(record.answer)}</pre><ul class="rationale">{rationale}</ul>'
            + (f'<ul class="rationale">{jurors}</ul>' if jurors else "")
            + "</details>"
        )
    hidden = "" if cand.id == view.artifact.best_candidate_id else " hidden"
    return f'<div class="cand-detail" id="cand-{view.index[cand.id]}"{hidden}>{"".join(blocks)}</div>'


def tree_section(view: View) -> str:
    art = view.artifact
    if not art.candidates:
        return empty_note("This artifact has no search tree.")
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
    for cand in sorted(art.candidates, key=lambda c: (c.level, natural_key(c.id))):
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
            f"<tr><td><code>{esc(cand.id)}</code></td><td><code>{esc(cand.parent_id or '–')}</code></td>"
            f"<td>{cand.level}</td><td>{fmt_num(view.node_reward.get(cand.id))}</td><td>{fmt_num(cand.mean_reward)}</td>"
            f"<td>{word_count(cand.prompt)}</td><td>{esc(', '.join(status))}</td></tr>"
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
