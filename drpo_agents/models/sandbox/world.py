"""What sandbox queries ask for, the directives a system prompt carries, and the responder's weaknesses."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# What queries ask for (shared by the responder, which reacts to it, and the judge)
# --------------------------------------------------------------------------------------------

_KIND_PATTERNS: dict[str, re.Pattern[str]] = {
    "harmful": re.compile(
        r"\b(hack|hacking|steal|stealing|weapon|bomb|explosive|poison|kill|murder|hurt|torture|stalk|"
        r"phishing|malware|ransomware|fraud|counterfeit|launder|shoplift|break into|pick a lock|"
        r"illegal(?:ly)?|drugs?|meth|cocaine|overdose|untraceable|blackmail|harass|dox|revenge|"
        r"without (?:them|him|her|anyone) knowing|fake (?:id|review|passport)|cheat on|bypass|"
        r"jailbreak|disable (?:the )?(?:alarm|camera)|insult|slur)\b",
        re.IGNORECASE,
    ),
    "emotional": re.compile(
        r"\b(feel|feeling|sad|lonely|alone|anxious|anxiety|stress(?:ed)?|overwhelmed|depressed|grief|"
        r"grieving|died|passed away|heartbroken|breakup|broke up|scared|afraid|worried|ashamed|"
        r"burn(?:ed|t)? out|cry|crying|hopeless|miss (?:my|her|him))\b",
        re.IGNORECASE,
    ),
    "time_sensitive": re.compile(
        r"\b(latest|current(?:ly)?|today|tonight|right now|this (?:week|month|year)|news|price of|"
        r"stock|weather|exchange rate|score of|who won|newest|recent(?:ly)?|20[2-3]\d)\b",
        re.IGNORECASE,
    ),
    "creative": re.compile(
        r"\b(poem|story|haiku|song|lyrics|slogan|limerick|fiction|imagine|creative|brainstorm|joke)\b",
        re.IGNORECASE,
    ),
    "task": re.compile(
        r"^\s*(write|rewrite|summari[sz]e|translate|convert|list|classify|extract|generate|create|"
        r"draft|format|sort|fix|correct|calculate|compute|give me|make)\b",
        re.IGNORECASE,
    ),
    "explanation": re.compile(
        r"\b(why|how|explain|what is|what are|difference between|describe)\b", re.IGNORECASE
    ),
}


def query_kinds(query: str) -> set[str]:
    """The kinds of request ``query`` is (``harmful``, ``emotional``, ``time_sensitive``, ...)."""
    return {kind for kind, pattern in _KIND_PATTERNS.items() if pattern.search(query)}


# --------------------------------------------------------------------------------------------
# Directives the responder recognises in a system prompt, in order of first appearance
# --------------------------------------------------------------------------------------------

_DIRECTIVES: dict[str, re.Pattern[str]] = {
    "structure": re.compile(r"structur|organi[sz]|bullet|numbered|step[- ]by[- ]step|heading", re.I),
    "refuse_harm": re.compile(r"(refuse|decline)\w*\b.{0,60}\b(harm|illegal|danger|unethical)", re.I | re.S),
    "over_refuse": re.compile(
        r"(refuse|decline)\w*\b.{0,40}\b(any|all)\b.{0,40}\b(sensitive|risky|controversial)", re.I | re.S
    ),
    "limitations": re.compile(
        r"limitation|real[- ]time|up[- ]to[- ]date|internet access|knowledge cut", re.I
    ),
    "empathy": re.compile(r"empath|compassion|feelings", re.I),
    "depth": re.compile(r"\bdepth\b|in[- ]depth|thorough|reasoning behind|explain why", re.I),
    "examples": re.compile(r"\bexamples?\b|illustrat|analog", re.I),
    "engagement": re.compile(r"conversational|follow[- ]up|engag", re.I),
    "accuracy": re.compile(r"accura|factual|never invent|do not invent|don't invent|fabricat", re.I),
    "concise": re.compile(r"concise|succinct|brief\b|to the point", re.I),
    "context": re.compile(
        r"earlier (?:in the conversation|turns?|messages?)|refer back to|details the user (?:gave|shared|mentioned)",
        re.I,
    ),
}


def prompt_directives(system_prompt: str) -> list[str]:
    """Directives present in ``system_prompt``, ordered by where they first appear."""
    found = []
    for name, pattern in _DIRECTIVES.items():
        match = pattern.search(system_prompt)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


def seeded_rng(*parts: object) -> random.Random:
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "is",
        "are",
        "be",
        "how",
        "what",
        "why",
        "can",
        "you",
        "i",
        "me",
        "my",
    ]
)


# What a user says once and expects remembered: amounts, dates and quantities (a number with the
# word after it), and names (a capitalised word that does not open a sentence).
_AMOUNT = re.compile(r"\b\d[\d,.:]*(?: ?(?:%|°C|[A-Za-z]+))?")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)*")
_NOT_NAMES = frozenset(
    {"I", "I'm", "My", "We", "Our", "The", "What", "How", "Can", "Should", "It", "Is", "And"}
)


def salient_details(text: str, limit: int = 4) -> list[str]:
    """The details a user gave in ``text`` that a good reply to a later turn reuses (at most ``limit``)."""
    found: list[str] = []
    for match in sorted([*_AMOUNT.finditer(text), *_NAME.finditer(text)], key=lambda m: m.start()):
        detail = match.group(0).strip(" ,.")
        number, _, unit = detail.partition(" ")
        if unit and unit.casefold() in _STOP | {"and", "has", "had", "was"}:  # "14 and": no unit
            detail = number.strip(" ,.")
        if detail and detail not in _NOT_NAMES and not any(detail in earlier for earlier in found):
            found.append(detail)
    return found[:limit]


def topic_of(query: str) -> str:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", query) if w.lower() not in _STOP]
    return " ".join(words[:6]).lower() or "your question"


@dataclass(frozen=True)
class SandboxWorld:
    """Knobs of the simulated responder's weaknesses.

    Attributes:
        attention_span: directives (in prompt order) followed reliably; later ones rarely.
        reliable: probability of following a directive within the attention span.
        distracted: probability of following one beyond it.
        max_prompt_words: prompts longer than this dilute every directive.
        dilution: the factor a prompt longer than ``max_prompt_words`` multiplies follow rates by.
        base_rates: probability of a behaviour with no directive at all.
        follow: per-directive probability of following it within the attention span, where it
            differs from ``reliable`` (a real small model follows some directives far better
            than others; see ``PRESETS``).
        icl_refusal: probability of refusing when an ICL answer in context refuses.
        icl_structure: probability of a list when an ICL answer in context is a list.
        icl_context: probability of reusing what the user said earlier when an ICL example
            conversation in context shows it.
    """

    attention_span: int = 5
    reliable: float = 0.95
    distracted: float = 0.3
    max_prompt_words: int = 170
    base_rates: tuple[tuple[str, float], ...] = (
        ("structure", 0.15),
        ("refuse_harm", 0.1),
        ("limitations", 0.05),
        ("empathy", 0.1),
        ("depth", 0.1),
        ("examples", 0.1),
        ("engagement", 0.05),
        ("accuracy", 0.3),
        ("concise", 0.2),
    )
    dilution: float = 0.6
    follow: tuple[tuple[str, float], ...] = ()
    icl_refusal: float = 0.6
    icl_structure: float = 0.5
    icl_context: float = 0.6

    def follow_rate(self, directive: str, position: int, prompt_words: int) -> float:
        """Probability of following ``directive`` at ``position`` (0-based) in a prompt this long."""
        reliable = dict(self.follow).get(directive, self.reliable)
        followed = reliable if position < self.attention_span else min(reliable, self.distracted)
        return followed * (self.dilution if prompt_words > self.max_prompt_words else 1.0)


# Named worlds for ``"sandbox?preset=NAME"``: the responder calibrated to a real model's measured
# directive following (benchmarks/directive_following.py; numbers in docs/REAL_MODEL.md).
# SmolLM2-135M-Instruct (measured 2026-11-27, 8 training queries x 6 prompts): it follows almost
# no directive; only "give an example" and "structure" move its answers a little, ICL refusals are
# not imitated, position and prompt length make no visible difference, and it never pads with
# filler or invents the judge's "exact figure" phrases (accuracy, concise base rates 1).
PRESETS: dict[str, SandboxWorld] = {
    "smollm2": SandboxWorld(
        attention_span=10,
        reliable=0.0,
        distracted=0.0,
        dilution=1.0,
        base_rates=(
            ("structure", 0.16),
            ("refuse_harm", 0.0),
            ("limitations", 0.0),
            ("empathy", 0.16),
            ("depth", 0.0),
            ("examples", 0.0),
            ("engagement", 0.16),
            ("accuracy", 1.0),
            ("concise", 1.0),
        ),
        follow=(("structure", 0.25), ("examples", 0.45), ("empathy", 0.08), ("depth", 0.05)),
        icl_refusal=0.0,
        icl_structure=0.3,
        icl_context=0.0,  # not measured: assumed as weak as its imitation of ICL refusals
    ),
}
