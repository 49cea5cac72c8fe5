"""Drawing primitives shared by the sections: escaping, number formats, colours, SVG pieces."""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Sequence

from drpo_agents.conversations import Turn

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
SCORE_SCALE: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (1.0, (215, 48, 39)),
    (2.0, (252, 141, 89)),
    (3.0, (243, 199, 79)),
    (4.0, (145, 207, 96)),
    (5.0, (26, 152, 80)),
)


def esc(value: object) -> str:
    """HTML-escape any text from the run (quotes included: safe in attributes too)."""
    return html.escape(str(value), quote=True)


def natural_key(text: str) -> list[tuple[int, int, str]]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def fmt_num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def reward_color(value: float | None) -> str:
    if value is None:
        return "#c5cad3"
    v = min(max(value, 1.0), 5.0)
    for (low, c_low), (high, c_high) in itertools.pairwise(SCORE_SCALE):
        if v <= high:
            t = (v - low) / (high - low)
            r, g, b = (round(x + (y - x) * t) for x, y in zip(c_low, c_high, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return SCORE_COLORS[5]


def sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


def nice_step(top: float, ticks: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving at most ``ticks`` intervals up to ``top``."""
    raw = max(top, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def word_count(text: str) -> int:
    return len(text.split())


def svg_frame(width: float, height: float, content: str, label: str, *, fixed: bool = False) -> str:
    size = f'width="{width:.0f}" height="{height:.0f}"' if fixed else 'width="100%"'
    return (
        f'<svg xmlns="{SVG_NS}" class="chart" role="img" aria-label="{esc(label)}" {size} '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{esc(FONT)}" font-size="12">'
        f"<title>{esc(label)}</title>{content}</svg>"
    )


def svg_text(
    x: float, y: float, text: str, *, anchor: str = "start", fill: str = MUTED, extra: str = ""
) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" {extra}>{esc(text)}</text>'


def empty_note(message: str) -> str:
    return f'<p class="empty">{esc(message)}</p>'


def legend_html(items: Sequence[tuple[str, str]], *, line: bool = False, extra: str = "") -> str:
    shape = "legend-line" if line else "legend-box"
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i class="{shape}" style="background:{color}"></i>{esc(name)}</span>'
            for name, color in items
        )
        + extra
        + "</div>"
    )


def earlier_turns(history: Sequence[Turn]) -> str:
    """A conversation's earlier turns, folded: one line says how many, a click shows them."""
    if not history:
        return ""
    lines = "".join(f'<p class="turn"><b>{esc(t["role"])}:</b> {esc(t["content"])}</p>' for t in history)
    return f'<details class="history"><summary>{len(history)} earlier turn{"s" if len(history) > 1 else ""}</summary>{lines}</details>'
