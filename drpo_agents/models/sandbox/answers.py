"""ICL answer edits: the sandbox rewriter's fix for each aspect the sandbox judge scores."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from drpo_agents.models.sandbox.features import (
    FABRICATED,
    FILLER,
    HEADING,
    HEDGE,
    LIST_LINE,
    REASON,
    UNSAFE,
    AnswerFeatures,
)
from drpo_agents.models.sandbox.world import query_kinds, salient_details, topic_of

ANSWER_FILLER = "In conclusion, this is an important topic with many aspects to consider."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_POINTS = (
    "Start with the core idea",
    "Take a practical first step",
    "Watch for common pitfalls",
    "Check your progress",
    "Know where to learn more",
)


def add_line(answer: str, line: str) -> str:
    return answer if line in answer else f"{answer}\n\n{line}".strip()


def _drop_filler(answer: str) -> str:
    kept = [s for s in _SENTENCE_END.split(answer) if not FILLER.search(s)]
    return (
        " ".join(kept).strip()
        if "\n" not in answer
        else "\n".join(line for line in answer.splitlines() if not FILLER.search(line)).strip()
    )


def _refusal(query: str) -> str:
    topic = topic_of(query)
    return (
        f"I can't help with {topic}, because it could hurt people or break the law.\n\n"
        "Instead, consider a safe and legitimate route: talk to someone you trust, or contact the relevant "
        "authority or a qualified professional who can help properly. If there is a problem behind the "
        "request, tell me about it and I can help with that."
    )


def _numbered(query: str, answer: str) -> str:
    """The answer as a lead sentence plus at least three numbered points."""
    if len(LIST_LINE.findall(answer)) >= 3:
        return answer
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(answer.split())) if s.strip()]
    lead, points = (
        (sentences[0], sentences[1:]) if sentences else (f"Here is an overview of {topic_of(query)}.", [])
    )
    for extra in _POINTS:
        if len(points) >= 3:
            break
        points.append(f"{extra} for {topic_of(query)}.")
    return "\n".join([lead, *[f"{i}. {p}" for i, p in enumerate(points, start=1)]])


def _with_reasons(query: str, answer: str) -> str:
    """At least four points, three or more of them saying why they matter."""
    answer = _numbered(query, answer)
    lines = answer.splitlines()
    items = [i for i, line in enumerate(lines) if LIST_LINE.match(line)]
    while len(items) < 4:
        lines.append(f"{len(items) + 1}. {_POINTS[len(items) % len(_POINTS)]} for {topic_of(query)}.")
        items.append(len(lines) - 1)
    for index in items:
        if len(REASON.findall("\n".join(lines))) >= 3:
            break
        if not REASON.search(lines[index]):
            lines[index] += " This matters because the later steps build on it."
    return "\n".join(lines)


def context_line(details: Sequence[str]) -> str:
    """The line with which a reply reuses what the user said earlier."""
    return f"Going by what you told me ({', '.join(details)}), I have tailored this to you."


def fix_answer(aspect: str, query: str, answer: str, rng: random.Random, earlier: str = "") -> str:
    """Edit ``answer`` toward a better score on ``aspect`` (what the sandbox judge looks for);
    ``earlier``: what the user said in the conversation's earlier turns."""
    name = aspect.casefold()
    if name == "consistency":
        missing = [d for d in salient_details(earlier) if d.casefold() not in answer.casefold()]
        return f"{context_line(missing)}\n{answer}" if missing else answer
    harmful = "harmful" in query_kinds(query)
    f = AnswerFeatures.of(answer)
    if harmful and name in {"safety", "helpfulness", "sensitivity", "compliance"}:
        return _refusal(query) if not (f.refused and f.alternatives) else answer
    if name in {"safety", "sensitivity"}:
        kept = [line for line in answer.splitlines() if not UNSAFE.search(line)]
        answer = "\n".join(kept).strip() or _refusal(query)
        return answer if name == "safety" else add_line(answer, "I understand this matters to you.")
    if f.refused:
        # Like a careful rewriter, never turn a refusal into compliance: improve around it.
        if name in {"helpfulness", "compliance"} and not f.alternatives:
            return add_line(answer, "Instead, consider a legitimate alternative that meets the same need.")
        if name in {"helpfulness", "compliance", "clarity", "depth"}:
            return answer if HEADING.search(answer) else f"**In short**\n{answer}"
    if name == "helpfulness":
        if f.list_items < 3 or f.reasons < 2:
            return _with_reasons(query, answer)
        return add_line(answer, f"For example, imagine applying this to {topic_of(query)} this week.")
    if name == "clarity":
        answer = _numbered(query, _drop_filler(answer))
        if not HEADING.search(answer):
            answer = f"**Overview**\n{answer}"
        return answer
    if name == "depth":
        return _with_reasons(query, answer)
    if name == "factuality":
        kept = [s for s in _SENTENCE_END.split(answer) if not FABRICATED.search(s)]
        answer = " ".join(kept).strip() if kept else answer
        if "time_sensitive" in query_kinds(query):
            return add_line(answer, _LIMITATION_NOTE)
        return (
            answer
            if HEDGE.search(answer)
            else add_line(answer, "Details typically vary, so treat this as general guidance.")
        )
    if name == "limitations":
        return add_line(answer, _LIMITATION_NOTE)
    if name == "empathy":
        opener = (
            "I'm sorry you're going through this; that sounds really hard."
            if "emotional" in query_kinds(query)
            else "I understand why this matters to you."
        )
        return answer if f.empathy else f"{opener}\n\n{answer}"
    if name in {"engagement", "creativity"}:
        answer = add_line(
            _drop_filler(answer), f"For example, imagine {topic_of(query)} in a real situation."
        )
        return answer if name == "creativity" or rng.random() < 0.3 else add_line(answer, _FOLLOW_UP)
    if name == "interactivity":
        return add_line(answer, _FOLLOW_UP)
    if name == "conciseness":
        answer = _drop_filler(answer)
        lines = answer.splitlines()
        while len(" ".join(lines).split()) > 200 and len(lines) > 2:
            lines.pop(-2)
        return "\n".join(lines)
    if name == "critical-thinking":
        return add_line(answer, "However, it depends on your situation, so weigh the trade-offs first.")
    return answer


_LIMITATION_NOTE = (
    "Note: I don't have access to real-time information, so please verify current details with an "
    "up-to-date official source."
)
_FOLLOW_UP = "Would you like me to go deeper on any of these points?"
