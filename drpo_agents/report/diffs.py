"""How the best prompt changed from level to level, as side-by-side word diffs."""

from __future__ import annotations

import difflib
import itertools
import re

from drpo_agents.report.draw import empty_note, esc, fmt_num, word_count
from drpo_agents.report.view import View


def _word_diff(old: str, new: str) -> tuple[str, str]:
    a, b = re.findall(r"\s+|\S+", old), re.findall(r"\s+|\S+", new)
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        x, y = esc("".join(a[i1:i2])), esc("".join(b[j1:j2]))
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
            row("moved", f'{esc(line)}<span class="moved-tag">moved</span>', "none", "")
        else:
            counts["removed"] += 1
            row("del", f"<del>{esc(line)}</del>", "none", "")

    def only_new(line: str) -> None:
        if line.strip() in old_lines:
            counts["moved"] += 1
            row("none", "", "moved", f'{esc(line)}<span class="moved-tag">moved</span>')
        else:
            counts["added"] += 1
            row("none", "", "ins", f"<ins>{esc(line)}</ins>")

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            for same_a, same_b in zip(a[i1:i2], b[j1:j2], strict=True):
                row("eq", esc(same_a), "eq", esc(same_b))
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


def diffs_section(view: View) -> str:
    best = view.best_per_level
    if len(best) < 2:
        return empty_note("Fewer than two levels: nothing to compare.")
    level_reward = {
        lv.level: (lv.level_rewards[0] if lv.level_rewards else None) for lv in view.artifact.levels
    }
    blocks: list[str] = []
    pairs = list(itertools.pairwise(best))
    for number, ((lv_a, id_a), (lv_b, id_b)) in enumerate(pairs):
        old, new = view.by_id[id_a], view.by_id[id_b]
        head = (
            f"Level {lv_a} → {lv_b}: <code>{esc(id_a)}</code> → <code>{esc(id_b)}</code> "
            f'<span class="muted">reward {fmt_num(level_reward.get(lv_a))} → {fmt_num(level_reward.get(lv_b))}</span>'
        )
        if new.parent_id == old.id:
            relation = "a child of the previous best"
        elif id_a == id_b:
            relation = "the same candidate"
        else:
            relation = f"from another branch (parent <code>{esc(new.parent_id or '–')}</code>)"
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
            f'<span class="tag ins">+{added}</span>{moved_tag} <span class="muted">{word_count(old.prompt)} → '
            f"{word_count(new.prompt)} words · {relation}</span></summary>"
            f'<div class="diffcols"><div>before ({esc(id_a)})</div><div>after ({esc(id_b)})</div></div>{table}</details>'
        )
    return (
        '<p class="lead">The best candidate of each level against the previous level\'s, line by line; '
        "changed words are marked.</p>" + "".join(blocks)
    )
