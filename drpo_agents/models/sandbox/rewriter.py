"""The sandbox rewriter: seeded prompt edits aimed at the weakest aspects, and ICL answer rewrites."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import Field

from drpo_agents.config import DEFAULT_INITIAL_PROMPT
from drpo_agents.json_types import JsonObject
from drpo_agents.models.sandbox.answers import ANSWER_FILLER, add_line, fix_answer
from drpo_agents.models.sandbox.chat import SandboxChatModel, earlier_user_turns, last_request, tagged
from drpo_agents.models.sandbox.world import seeded_rng, topic_of
from drpo_agents.schemas import ProposalLimits, read_proposal_limits

_Critique = Sequence[tuple[str, int, str]]  # (aspect, score, rationale) per aspect

_GUIDANCE: dict[str, tuple[str, ...]] = {
    "Safety": (
        "Decline requests that could cause harm or break the law, explain briefly why, and suggest a safe, legitimate alternative.",
        "Refuse harmful or illegal requests kindly, and point the user to a lawful way to meet their underlying need.",
        "Refuse any request that touches on sensitive or risky topics.",  # trap: over-refusal
    ),
    "Helpfulness": (
        "Address the user's real goal with practical, well-organized steps.",
        "Give actionable guidance and explain the reasoning behind each recommendation.",
    ),
    "Clarity": (
        "Structure answers with a one-line overview followed by numbered points.",
        "Organize longer answers under short headings or bullet points so they are easy to scan.",
    ),
    "Depth": (
        "Explain the reasoning behind each point in depth: why it matters and what follows from it.",
        "Go beyond surface facts and be thorough about causes and trade-offs.",
    ),
    "Factuality": (
        "Be accurate: never invent numbers, sources or certainty you do not have.",
        "Stick to well-established facts and say plainly when something is uncertain.",
    ),
    "Limitations": (
        "Acknowledge your limitations: you have no real-time data or internet access, so point users to up-to-date sources.",
        "When a question depends on current events or prices, say your knowledge may be out of date and suggest where to check.",
    ),
    "Empathy": (
        "When users share difficulties or feelings, respond with empathy before giving advice.",
        "Show compassion: acknowledge the user's feelings in a warm, human way.",
    ),
    "Engagement": (
        "Use a conversational tone, include a concrete example, and offer a follow-up.",
        "Make answers engaging with a relatable example.",
    ),
    "Conciseness": (
        "Be concise: cut filler, repetition and generic closing remarks.",
        "Keep answers to the point.",
    ),
    "Creativity": ("Bring original ideas and vivid examples to creative requests.",),
    "Compliance": ("Follow the user's requested format, length and constraints exactly.",),
    "Sensitivity": ("Treat every person and group with respect and avoid stereotypes.",),
    "Critical-Thinking": ("Weigh alternatives and trade-offs before drawing a conclusion.",),
    "Interactivity": ("Invite a follow-up question when more detail could help.",),
    "Consistency": (
        "Use the details the user gave earlier in the conversation (names, places, dates, amounts) and stay consistent with them.",
        "Refer back to what the user said in earlier turns instead of answering as if the conversation just started.",
    ),
}
_FLUFF = (
    "Maintain a friendly and professional tone.",
    "Always do your best for the user.",
    "Be a reliable and trustworthy assistant.",
)
_EVAL_LINE = re.compile(r"^- ([^:\n]+): ([1-5])/5 - (.*)$", re.M)
_LESSON = re.compile(r"\[([A-Za-z-]+) ([1-5])/5\]")


def _split_prompt(prompt: str) -> tuple[str, list[str]]:
    head: list[str] = []
    bullets: list[str] = []
    for line in prompt.splitlines():
        stripped = line.strip()
        if stripped.startswith("- "):
            bullets.append(stripped[2:].strip())
        elif stripped:
            head.append(stripped)
    return " ".join(head), bullets


def _join_prompt(head: str, bullets: Sequence[str]) -> str:
    return "\n".join([head, *[f"- {b}" for b in bullets]]) if bullets else head


def _guidance_aspect(bullet: str) -> str | None:
    for aspect, lines in _GUIDANCE.items():
        if bullet in lines:
            return aspect
    return None


def _targets(
    totals: dict[str, list[int]], bullets: Sequence[str], lessons: Sequence[tuple[str, int]]
) -> tuple[list[str], list[str]]:
    """The aspects to work on: this evaluation's weak ones (worst first), and past failures.

    Past failures are the lessons' aspects the prompt does not address yet, most frequent
    first (likeliest to recur).
    """
    ranked = sorted(totals, key=lambda a: (sum(totals[a]) / len(totals[a]), a))
    current_weak = [a for a in ranked if sum(totals[a]) / len(totals[a]) < 5] or ranked or ["Helpfulness"]
    covered = {_guidance_aspect(b) for b in bullets}
    remembered: dict[str, int] = {}
    for aspect, _ in lessons:
        if aspect in _GUIDANCE and aspect not in covered and aspect not in current_weak:
            remembered[aspect] = remembered.get(aspect, 0) + 1
    return current_weak, sorted(remembered, key=lambda a: (-remembered[a], a))


class SandboxRewriter(SandboxChatModel):
    """A seeded rewriter that edits prompts toward the judge's lowest-scoring aspects.

    ``trap_rate`` is the chance a proposal contains a tempting but harmful or empty edit.
    """

    trap_rate: float = Field(0.25, ge=0.0, le=1.0)

    @property
    def role_name(self) -> str:
        return "rewriter"

    def _reply(self, messages: list[BaseMessage]) -> JsonObject | str:
        text = last_request(messages)
        # An ICL answer rewrite (tagged <example_to_improve>); a re-ask after an invalid reply
        # is answered from the original request, further up the conversation.
        answer_request = next(
            (
                str(m.content)
                for m in reversed(messages)
                if isinstance(m, HumanMessage) and "<example_to_improve>" in str(m.content)
            ),
            None,
        )
        if answer_request is not None:
            example = tagged(answer_request, "example_to_improve") or ""
            return self.rewrite_answer(
                tagged(example, "query") or "",
                tagged(example, "answer") or "",
                [(a.strip(), int(sc), r) for a, sc, r in _EVAL_LINE.findall(example)],
                context=tagged(answer_request, "earlier_attempts") or "",
                earlier=earlier_user_turns(answer_request),
            )
        current = tagged(text, "current_prompt") or DEFAULT_INITIAL_PROMPT
        # The count and bullet budget come from the schema the request asked for (whatever the
        # prompt template's wording), else PromptRewriter's defaults.
        limits = read_proposal_limits(self.response_schema or {}) or ProposalLimits()
        lessons = [(a, int(s)) for a, s in _LESSON.findall(tagged(text, "lessons") or "")]
        return {
            "proposals": self.propose(
                current,
                [(a.strip(), int(s), r) for a, s, r in _EVAL_LINE.findall(text)],
                lessons=lessons,
                n=limits.count,
                max_bullets=limits.max_bullets,
                max_new=limits.max_new_bullets,
            )
        }

    def propose(
        self,
        current: str,
        evaluation: Sequence[tuple[str, int, str]],
        *,
        n: int,
        max_bullets: int,
        max_new: int,
        lessons: Sequence[tuple[str, int]] = (),
    ) -> list[dict[str, str]]:
        """``n`` distinct edited prompts (as PromptProposal-shaped dicts).

        ``lessons`` are (aspect, score) pairs from past critiques of similar queries: aspects
        that failed before and that the prompt does not address yet are targeted after the
        current evaluation's weakest aspect.
        """
        head, bullets = _split_prompt(current)
        totals: dict[str, list[int]] = {}
        for aspect, score, _ in evaluation:
            totals.setdefault(aspect, []).append(score)
        current_weak, past = _targets(totals, bullets, lessons)
        weak = current_weak[:1] + past + current_weak[1:]
        planned = ([[current_weak[0], past[0]]] if past else []) + [current_weak[:1], current_weak[:2]]
        rng = seeded_rng(self.seed, "rewrite", current, sorted(evaluation), past)
        lowest = ", ".join(
            f"{a} ({sum(totals[a]) / len(totals[a]):.1f}/5)"
            if a in totals
            else f"{a} (failed on similar queries)"
            for a in weak[:3]
        )
        proposals: list[dict[str, str]] = []
        seen = {current}
        for attempt in range(4 * n):
            new_bullets = list(bullets)
            targets = (
                planned[attempt]
                if attempt < len(planned)
                else rng.sample(weak, k=min(len(weak), rng.randint(1, 2)))
            )
            actions = self._edit(new_bullets, targets, totals, rng, max_bullets=max_bullets, max_new=max_new)
            prompt = _join_prompt(head, new_bullets)
            if prompt in seen or not actions:
                continue
            seen.add(prompt)
            proposals.append(
                {
                    "analysis": f"Weakest aspects: {lowest}.",
                    "thought": "; ".join(actions).capitalize() + ".",
                    "new_prompt": prompt,
                }
            )
            if len(proposals) == n:
                break
        return proposals

    def _edit(
        self,
        bullets: list[str],
        targets: Sequence[str],
        totals: dict[str, list[int]],
        rng: random.Random,
        *,
        max_bullets: int,
        max_new: int,
    ) -> list[str]:
        """Edit ``bullets`` in place toward ``targets``; the edits made, in words."""
        actions: list[str] = []
        added = 0
        for aspect in targets:
            options = _GUIDANCE.get(aspect, (f"Improve {aspect.lower()} in every answer.",))
            existing = [b for b in bullets if _guidance_aspect(b) == aspect]
            if existing and rng.random() < 0.6:
                # Already instructed but not followed: move it up where it gets attention.
                bullets.remove(existing[0])
                bullets.insert(0, existing[0])
                actions.append(f"moved the {aspect} guidance to the top")
                continue
            choices = [o for o in options if o not in bullets]
            if not choices:
                continue
            if rng.random() >= self.trap_rate:
                choices = [c for c in choices if not c.startswith("Refuse any")] or choices
            line = rng.choice(choices)
            if added >= max_new or len(bullets) >= max_bullets:
                # No room: replace the bullet of the best-scoring (or unscored) aspect.
                victim = max(
                    bullets,
                    key=lambda b: sum(totals.get(_guidance_aspect(b) or "", [6])),
                    default=None,
                )
                if victim is None:
                    continue
                bullets[bullets.index(victim)] = line
                actions.append(f"replaced a bullet with {aspect} guidance")
            else:
                bullets.insert(rng.randint(0, len(bullets)), line)
                added += 1
                actions.append(f"added {aspect} guidance")
        if rng.random() < self.trap_rate / 2 and added < max_new and len(bullets) < max_bullets:
            bullets.append(rng.choice(_FLUFF))
            actions.append("added a general tone bullet")
        return actions

    def rewrite_answer(
        self, query: str, answer: str, evaluation: _Critique, *, context: str = "", earlier: str = ""
    ) -> dict[str, str]:
        """An edited answer aimed at the lowest-scoring aspects (AnswerRewrite-shaped dict);
        ``earlier``: what the user said in the example conversation's earlier turns.

        One or two weak aspects are fixed per call (so several rounds may be needed), and with
        probability ``trap_rate / 2`` the edit also pads the answer with filler, which the judge
        penalises: rewrites are not always better, so keeping the best answer matters.
        """
        ranked = sorted(evaluation, key=lambda item: (item[1], item[0]))
        weak = [aspect for aspect, score, _ in ranked if score < 5] or ["Helpfulness"]
        rng = seeded_rng(self.seed, "rewrite-answer", query, answer, sorted(evaluation), context)
        count = min(len(weak), rng.randint(1, 2))
        targets = weak[:count] if rng.random() < 0.6 else rng.sample(weak, k=count)
        new = answer.strip()
        for aspect in targets:
            new = fix_answer(aspect, query, new, rng, earlier)
        if new == answer.strip():
            new = add_line(new, f"For example, imagine putting this into practice with {topic_of(query)}.")
            if new == answer.strip():
                new = add_line(new, "I hope this helps; tell me if any part is unclear.")
        if rng.random() < self.trap_rate / 2:
            new = add_line(new, ANSWER_FILLER)
        return {
            "analysis": f"Weakest aspects: {', '.join(weak[:3])}; revised {', '.join(targets)}.",
            "new_answer": new,
        }
