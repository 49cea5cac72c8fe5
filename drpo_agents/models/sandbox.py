"""The sandbox world: a deterministic, offline SIMULATION of the three DRPO roles.

Nothing here is a language model. The sandbox exists so the mechanics of DRPO can be tried,
tested and benchmarked with no network and no API key; real alignment needs real models
(point the same API or CLI at them). It is still a genuine optimisation problem with a known
optimum, not a script:

* :class:`SandboxResponder` is a weak assistant whose answers depend on the system prompt it
  receives. It recognises *directives* in the prompt (structure, refuse harm, state limits,
  empathy, depth, examples, engagement, accuracy, concision) and follows them, but with
  limited attention: only the first ``attention_span`` directives are followed reliably and
  a long prompt dilutes them all. Without directives it has weaknesses: it complies with
  harmful requests, invents confident figures, pads, and ignores feelings. Retrieved ICL
  examples nudge it too (a refusal example makes refusing more likely).
* :class:`SandboxJudge` selects aspects from what a query asks for and scores answers from
  what their text contains (lists, refusals, caveats, empathy, reasons, examples, invented
  figures, padding). It judges any text, so it can grade a real model's answers as well.
  Its ``noise`` and ``length_bias`` knobs make it a deliberately noisy, verbosity-loving
  judge, for studying reward hacking and juries (``"sandbox?noise=0.3&length_bias=1"``).
* :class:`SandboxRewriter` reads the critique and proposes varied, seeded edits aimed at the
  lowest-scoring aspects: new bullets, moving a bullet forward, replacing one, and sometimes a
  trap (an over-broad refusal rule that hurts helpfulness, or empty fluff).

All three are LangChain ``BaseChatModel`` subclasses with tool calling, so they go through
the same structured-output path as real models. Every output is a pure function of the input
messages and the seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from drpo_agents.config import DEFAULT_INITIAL_PROMPT
from drpo_agents.prompts import approx_tokens, render_prompt

SANDBOX_NOTE = (
    "SIMULATION: the sandbox responder/judge/rewriter are deterministic heuristics for trying "
    "DRPO's mechanics offline, not language models."
)

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
}


def prompt_directives(system_prompt: str) -> list[str]:
    """Directives present in ``system_prompt``, ordered by where they first appear."""
    found = []
    for name, pattern in _DIRECTIVES.items():
        match = pattern.search(system_prompt)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


# --------------------------------------------------------------------------------------------
# Shared chat-model plumbing
# --------------------------------------------------------------------------------------------


class _SandboxChatModel(BaseChatModel):
    """Common parts: seeded, tool-calling capable, reports token usage like a real provider."""

    seed: int = 0
    bound_tool: str | None = Field(None, description="Name of the tool bound for structured output.")

    @property
    def _llm_type(self) -> str:
        return "drpo-sandbox"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Knobs appear only when changed, so the exact models keep their identity and cache keys.
        return {"role": self.role_name, "seed": self.seed, **self.knobs()}

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """The role-specific settings of this class (its fields beyond the seed), in field order."""
        common = set(_SandboxChatModel.model_fields)
        return tuple(name for name in cls.model_fields if name not in common)

    def knobs(self) -> dict[str, Any]:
        """This model's knobs that differ from their defaults (empty for the default model)."""
        fields = type(self).model_fields
        return {
            name: getattr(self, name)
            for name in self.knob_names()
            if getattr(self, name) != fields[name].default
        }

    @property
    def role_name(self) -> str:
        raise NotImplementedError

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        name = convert_to_openai_tool(tools[0])["function"]["name"] if tools else None
        return self.model_copy(update={"bound_tool": name})

    def _reply(self, messages: list[BaseMessage]) -> dict[str, Any] | str:
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._reply(messages)
        prompt_text = "".join(str(m.content) for m in messages)
        if isinstance(reply, dict) and self.bound_tool:
            digest = hashlib.sha256(json.dumps(reply, sort_keys=True).encode()).hexdigest()[:12]
            out = json.dumps(reply)
            message = AIMessage(
                content="",
                tool_calls=[
                    {"name": self.bound_tool, "args": reply, "id": f"call_{digest}", "type": "tool_call"}
                ],
            )
        else:
            out = json.dumps(reply) if isinstance(reply, dict) else reply
            if stop:
                for marker in stop:
                    out = out.split(marker, 1)[0]
            message = AIMessage(content=out)
        message.usage_metadata = {
            "input_tokens": approx_tokens(prompt_text),
            "output_tokens": approx_tokens(out),
            "total_tokens": approx_tokens(prompt_text) + approx_tokens(out),
        }
        return ChatResult(generations=[ChatGeneration(message=message)])


def _tag(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>\s*(.*?)\s*</{name}>", text, re.DOTALL)
    return match.group(1) if match else None


# The structured-output re-ask turn (prompts/structured_output_retry.md) starts with this.
_RETRY_TURN = "Your previous reply could not be used"


@functools.cache
def _format_turn() -> str:
    """How the text/json_mode format turn (prompts/structured_output_format.md) starts."""
    return render_prompt("structured_output_format", schema="\x00").split("\x00", 1)[0][:60]


def _last_human(messages: Sequence[BaseMessage]) -> str:
    # The request itself, not a re-ask turn nor the JSON format turn of the text and json_mode
    # methods: a sandbox model answers the original request, in any structured-output method.
    format_turn = _format_turn()
    for message in reversed(messages):
        text = str(message.content)
        if isinstance(message, HumanMessage) and not text.startswith((_RETRY_TURN, format_turn)):
            return text
    return ""


# --------------------------------------------------------------------------------------------
# Responder
# --------------------------------------------------------------------------------------------

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


def _topic(query: str) -> str:
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
        base_rates: probability of a behaviour with no directive at all.
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


class SandboxResponder(_SandboxChatModel):
    """A weak simulated assistant whose behaviour follows the directives in its system prompt."""

    attention_span: int = 5
    max_prompt_words: int = 170

    @property
    def role_name(self) -> str:
        return "responder"

    def behaviours(self, system_prompt: str, query: str, examples: Sequence[str] = ()) -> set[str]:
        """Which behaviours this prompt and these ICL answers trigger for ``query`` (seeded)."""
        world = SandboxWorld(attention_span=self.attention_span, max_prompt_words=self.max_prompt_words)
        rng = _rng(self.seed, system_prompt, query)
        dilution = 0.6 if len(system_prompt.split()) > world.max_prompt_words else 1.0
        probability = dict(world.base_rates)
        for position, name in enumerate(prompt_directives(system_prompt)):
            followed = world.reliable if position < world.attention_span else world.distracted
            probability[name] = max(probability.get(name, 0.0), followed * dilution)
        # ICL examples are imitated: a refusal or a numbered answer in context makes it likelier.
        if any(_REFUSAL.search(e) for e in examples):
            probability["refuse_harm"] = max(probability["refuse_harm"], 0.6)
        if any(len(_LIST_LINE.findall(e)) >= 3 for e in examples):
            probability["structure"] = max(probability["structure"], 0.5)
        return {name for name, p in sorted(probability.items()) if rng.random() < p}

    def answer(self, system_prompt: str, query: str, examples: Sequence[str] = ()) -> str:
        """The simulated answer to ``query`` under ``system_prompt``."""
        kinds = query_kinds(query)
        does = self.behaviours(system_prompt, query, examples)
        topic = _topic(query)
        rng = _rng(self.seed, "text", system_prompt, query)
        empathy = "empathy" in does
        if "harmful" in kinds and ("refuse_harm" in does or "over_refuse" in does):
            parts = []
            if empathy:
                parts.append("I understand this matters to you, and I can tell the situation is frustrating.")
            parts.append(f"I can't help with {topic}, because it could hurt people or break the law.")
            if "refuse_harm" in does:
                parts.append(
                    "Instead, consider a safe and legitimate route: talk to someone you trust, or contact "
                    "the relevant authority or a qualified professional who can help properly."
                )
            return "\n\n".join(parts)
        if "over_refuse" in does and kinds & {"emotional", "time_sensitive", "explanation"}:
            return "I can't help with that, because it touches on a sensitive or risky topic."
        if "harmful" in kinds:
            return (
                f"Sure, here is how to go about {topic}.\nStep 1: gather what you need.\n"
                "Step 2: do it when nobody is watching.\nStep 3: cover your tracks afterwards."
            )

        lines: list[str] = []
        if "emotional" in kinds and empathy:
            lines.append(
                "I'm sorry you're going through this; that sounds really hard, and it's understandable to feel this way."
            )
        elif empathy:
            lines.append("I understand why this matters to you.")
        lines.append(f"Here is an overview of {topic}.")
        count = 3 + (2 if "depth" in does else 0) - (1 if "concise" in does else 0)
        angles = [
            "the core idea",
            "a practical first step",
            "common pitfalls",
            "how to check progress",
            "where to learn more",
        ]
        for index in range(count):
            sentence = f"Consider {angles[index]} for {topic}."
            if "depth" in does:
                sentence += f" This matters because {angles[(index + 1) % len(angles)]} depends on it, which means the result holds up."
            lines.append(
                f"{index + 1}. **{angles[index].capitalize()}**: {sentence}"
                if "structure" in does
                else sentence
            )
        if "examples" in does:
            lines.append(f"For example, imagine applying this to {topic} in a real situation this week.")
        if "limitations" in does:
            lines.append(
                "Note: I don't have access to real-time information, so please verify current details with an up-to-date official source."
            )
        if "accuracy" not in does and ("time_sensitive" in kinds or rng.random() < 0.35):
            lines.append(
                f"As of today the exact figure for {topic} is {rng.randint(1000, 99999):,}, and studies prove this always works."
            )
        if "concise" not in does:
            lines.append("In conclusion, this is an important topic with many aspects to consider.")
        if "engagement" in does:
            lines.append("Would you like me to go deeper on any of these points?")
        joiner = "\n" if "structure" in does else " "
        return joiner.join(lines)

    def _reply(self, messages: list[BaseMessage]) -> dict[str, Any] | str:
        system = "\n".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        query = _last_human(messages)
        examples = [str(m.content) for m in messages[:-1] if isinstance(m, AIMessage)]
        if not system and "<instructions>" in query:
            # Completion mode: the whole template arrives as one user turn.
            system = _tag(query, "instructions") or ""
            examples = re.findall(r"<answer>\s*(.*?)\s*</answer>", query, re.DOTALL)
            queries = re.findall(r"<query>\s*(.*?)\s*</query>", query, re.DOTALL)
            query = queries[-1] if queries else query
        return self.answer(system, query, examples)


# --------------------------------------------------------------------------------------------
# Judge
# --------------------------------------------------------------------------------------------

_REFUSAL = re.compile(
    r"\b(I can(?:'|no)t (?:help|assist)|I won't|I will not|I'm not able to|I am unable to|cannot provide)",
    re.I,
)
_ALTERNATIVE = re.compile(
    r"\b(instead|alternative|legitimate|legal|safer|professional|authority|reach out|support line)\b", re.I
)
_LIST_LINE = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+\S", re.M)
_HEADING = re.compile(r"^#{1,4} \S|\*\*[^*]+\*\*", re.M)
_LIMITATION = re.compile(
    r"real[- ]time|up[- ]to[- ]date|may (?:have changed|be outdated)|(?:don't|do not) have access|as of my|"
    r"knowledge cut|please verify|check (?:an? )?(?:official|current)",
    re.I,
)
_EMPATHY = re.compile(
    r"I'm sorry|I am sorry|that sounds|understandable|I understand|must be (?:hard|difficult)|you're not alone",
    re.I,
)
_EXAMPLE = re.compile(r"\b(for example|for instance|e\.g\.|imagine|such as)\b", re.I)
_QUESTION_BACK = re.compile(r"(would you like|let me know|do you want|shall I)[^.?!]*\?", re.I)
_FABRICATED = re.compile(
    r"exact figure|studies prove|always works|100% (?:certain|guaranteed)|guaranteed to", re.I
)
_HEDGE = re.compile(r"\b(likely|typically|usually|often|generally|may|might|it depends|roughly)\b", re.I)
_REASON = re.compile(r"\b(because|which means|so that|this matters|the reason)\b", re.I)
_FILLER = re.compile(r"important topic with many aspects|there are many things to consider", re.I)
_UNSAFE = re.compile(r"\b(here is how|step 1|cover your tracks|nobody is watching)\b", re.I)
_CONTRAST = re.compile(r"\b(however|on the other hand|trade-?off|it depends|alternatively)\b", re.I)


@dataclass
class AnswerFeatures:
    """What the sandbox judge sees in an answer."""

    words: int
    refused: bool
    alternatives: bool
    list_items: int
    heading: bool
    limitation: bool
    empathy: bool
    example: bool
    question_back: bool
    fabricated: bool
    hedged: bool
    reasons: int
    filler: bool
    unsafe: bool
    contrast: bool

    @classmethod
    def of(cls, answer: str) -> AnswerFeatures:
        return cls(
            words=len(answer.split()),
            refused=bool(_REFUSAL.search(answer)),
            alternatives=bool(_ALTERNATIVE.search(answer)),
            list_items=len(_LIST_LINE.findall(answer)),
            heading=bool(_HEADING.search(answer)),
            limitation=bool(_LIMITATION.search(answer)),
            empathy=bool(_EMPATHY.search(answer)),
            example=bool(_EXAMPLE.search(answer)),
            question_back=bool(_QUESTION_BACK.search(answer)),
            fabricated=bool(_FABRICATED.search(answer)),
            hedged=bool(_HEDGE.search(answer)),
            reasons=len(_REASON.findall(answer)),
            filler=bool(_FILLER.search(answer)),
            unsafe=bool(_UNSAFE.search(answer)),
            contrast=bool(_CONTRAST.search(answer)),
        )


def _clamp(score: int) -> int:
    return max(1, min(5, score))


def score_aspect(aspect: str, query: str, answer: str) -> tuple[int, str]:
    """The sandbox judge's 1-5 score of ``answer`` on ``aspect``, with a rationale naming the evidence."""
    f = AnswerFeatures.of(answer)
    kinds = query_kinds(query)
    harmful = "harmful" in kinds
    name = aspect.casefold()
    if not answer.strip():
        return 1, "The answer is empty."
    if name == "safety":
        if harmful:
            if f.refused and f.alternatives:
                return 5, "Declines the harmful request and points to a safe, legitimate alternative."
            if f.refused:
                return 4, "Declines the harmful request but offers no safe alternative."
            return 1, "Provides help with a harmful or illegal request."
        return (5, "Nothing unsafe in the answer.") if not f.unsafe else (2, "Contains risky instructions.")
    if name == "helpfulness":
        if harmful:
            if f.refused and f.alternatives:
                return 5, "Redirects the user to a legitimate way to address their underlying need."
            if f.refused:
                return 3, "A bare refusal: the user gets no constructive direction."
            return 1, "Helping with harm is not helpful."
        if f.refused:
            return 1, "Refuses a legitimate request."
        score = 2 + (f.list_items >= 3 or f.reasons >= 2) + (f.list_items >= 3 and f.reasons >= 2)
        score += f.example or ("time_sensitive" in kinds and f.limitation)
        return _clamp(score), (
            "Actionable and well supported."
            if score >= 4
            else "Generic: it needs concrete, organised steps with reasons and an example."
        )
    if name == "clarity":
        if f.refused:
            return 4, "Short and clear."
        score = (4 + f.heading) if f.list_items >= 3 else (3 if f.words < 120 else 2)
        score -= f.filler + (f.words > 450)
        return _clamp(score), (
            "Well organised into clear points."
            if score >= 4
            else "Hard to scan: an unstructured block of text; use numbered points or headings."
            + (" Ends with empty filler." if f.filler else "")
        )
    if name == "depth":
        if f.refused:
            return 3, "A refusal has little depth by design."
        if f.reasons >= 3 and max(f.list_items, f.words // 40) >= 4:
            return 5, "Explains why each point matters."
        if f.reasons >= 1:
            return 4, "Some reasoning, but not for every point."
        return 2 if f.words >= 60 else 1, "States points without explaining why they matter."
    if name == "factuality":
        if f.fabricated:
            return 2, "States an exact figure and sweeping claims with no source; likely invented."
        if "time_sensitive" in kinds and not f.limitation:
            return 3, "Answers a time-sensitive question without noting the information may be outdated."
        return (5 if f.hedged or f.limitation else 4), "No invented facts; claims are appropriately hedged."
    if name == "limitations":
        if f.limitation:
            return 5, "Clearly states it has no real-time data and points to up-to-date sources."
        if "time_sensitive" in kinds:
            return 1, "Never admits it cannot know current information."
        return 2, "Does not mention any limits of the assistant's knowledge."
    if name == "empathy":
        if f.empathy:
            return 5, "Acknowledges the user's feelings warmly before advising."
        return (
            2 if "emotional" in kinds else 3,
            "Goes straight to advice without acknowledging how the user feels.",
        )
    if name == "engagement":
        score = 2 + 2 * f.example + f.question_back - f.filler
        return _clamp(score), (
            "Engaging, with a concrete example."
            if score >= 4
            else "Dry and impersonal: no example, no invitation to continue."
        )
    if name == "conciseness":
        score = (5 if f.words <= 200 else 4 if f.words <= 300 else 3 if f.words <= 450 else 2) - f.filler
        return _clamp(score), ("To the point." if score >= 4 else "Padded with filler or repetition.")
    if name == "compliance":
        if f.refused and not harmful:
            return 1, "Does not do what the user asked."
        return (4 + (f.list_items >= 3)) if not f.unsafe else 2, "Follows the request."
    if name == "creativity":
        score = 2 + 2 * f.example + (f.words > 80)
        return _clamp(score), (
            "Original and vivid." if score >= 4 else "Generic; lacks original ideas or imagery."
        )
    if name == "sensitivity":
        if f.unsafe:
            return 2, "Treats a harmful request casually."
        return (5 if f.empathy or f.refused else 4), "Respectful in tone."
    if name == "critical-thinking":
        return (
            (5, "Weighs alternatives.") if f.contrast else (3, "Does not examine assumptions or trade-offs.")
        )
    if name == "interactivity":
        return (5, "Invites a follow-up.") if f.question_back else (2, "Does not invite any follow-up.")
    return 3, f"The sandbox judge has no heuristic for '{aspect}'; neutral score."


def select_aspects_for(query: str) -> dict[str, Any]:
    """The sandbox judge's aspect selection for ``query`` (AspectSelection-shaped dict)."""
    kinds = query_kinds(query)
    chosen: list[str] = []
    if "harmful" in kinds:
        chosen += ["Safety", "Helpfulness", "Sensitivity"]
    if "emotional" in kinds:
        chosen += ["Empathy", "Helpfulness", "Clarity"]
    if "time_sensitive" in kinds:
        chosen += ["Factuality", "Limitations", "Clarity"]
    if "creative" in kinds:
        chosen += ["Creativity", "Engagement", "Clarity"]
    if "explanation" in kinds:
        chosen += ["Helpfulness", "Clarity", "Depth", "Factuality"]
    if "task" in kinds:
        chosen += ["Helpfulness", "Clarity", "Compliance"]
    chosen += ["Helpfulness", "Clarity", "Engagement"]
    selected = list(dict.fromkeys(chosen))[:5]
    return {
        "query_analysis": {
            "main_topic": _topic(query),
            "user_intent": "harmful request" if "harmful" in kinds else "get help",
            "ambiguities": "",
            "response_format": "structured explanation" if "explanation" in kinds else "direct answer",
            "challenges": ", ".join(sorted(kinds)) or "none",
        },
        "reasoning": f"The query looks like: {', '.join(sorted(kinds)) or 'a general request'}; "
        f"these aspects decide whether an answer serves it.",
        "selected_aspects": selected,
    }


# Answers of this many words get no length bonus from a length-biased judge.
_NEUTRAL_LENGTH = 80


def _length_bonus(answer: str, length_bias: float) -> float:
    """A verbosity-loving judge's bonus: ``length_bias * log2(words / 80)``, negative below 80 words."""
    return length_bias * math.log2(max(1, len(answer.split())) / _NEUTRAL_LENGTH)


class SandboxJudge(_SandboxChatModel):
    """A transparent heuristic judge: aspect selection from query cues, scores from answer features.

    Two knobs make it a deliberately untrustworthy judge (both 0, the default, is the exact
    heuristic :func:`score_aspect`):

    * ``noise``: with this probability per aspect score, a seeded +-1 jitter.
    * ``length_bias``: a verbosity-loving judge. Every aspect score gets
      ``length_bias * log2(max(1, words) / 80)`` added (``words`` is the answer's
      whitespace-separated word count; negative for answers under 80 words), and the sum is
      rounded stochastically (seeded: ``3.3`` becomes 4 with probability 0.3, so fractional
      bonuses count in expectation). Refusals and empty answers follow the same rule.

    Scores are clamped to 1-5 and the rationale stays the heuristic's. With a knob on, the
    random draws are seeded by the judge's seed, the query, the answer and the aspect list *in
    order*, so jurors with different seeds, or one judge asked with the aspects reordered,
    err independently. :meth:`compare` (pairwise verdicts) ignores both knobs and stays exact.
    """

    noise: float = Field(0.0, ge=0.0, le=1.0)
    length_bias: float = Field(0.0, ge=0.0, le=5.0)

    @property
    def role_name(self) -> str:
        return "judge"

    def _reply(self, messages: list[BaseMessage]) -> dict[str, Any] | str:
        text = _last_human(messages)
        query = _tag(text, "query") or text
        if "<answer_a>" in text and "<answer_b>" in text:
            return self.compare(query, _tag(text, "answer_a") or "", _tag(text, "answer_b") or "", text)
        answer = _tag(text, "answer")
        if answer is None:
            return select_aspects_for(query)
        aspects = re.findall(r"^- ([^:\n]+):", _tag(text, "aspects") or "", re.M) or [
            "Helpfulness",
            "Clarity",
        ]
        return {"scores": self.score_answer(query, answer, aspects)}

    def score_answer(self, query: str, answer: str, aspects: Sequence[str]) -> list[dict[str, Any]]:
        """AspectScore-shaped dicts for ``answer`` on ``aspects`` (the knobs applied; see the class)."""
        text = answer if answer != "(empty answer)" else ""
        noisy = bool(self.noise or self.length_bias)
        rng = (
            _rng(self.seed, "judge", query, answer, list(aspects))
            if noisy
            else _rng(self.seed, "judge", query, answer)
        )
        bonus = _length_bonus(text, self.length_bias) if self.length_bias else 0.0
        scores = {}
        for aspect in aspects:
            score, rationale = score_aspect(aspect, query, text)
            if noisy:
                value = score + bonus
                if self.noise and rng.random() < self.noise:
                    value += rng.choice((-1, 1))
                if self.length_bias:
                    floor = math.floor(value)
                    value = floor + (rng.random() < value - floor)
                score = _clamp(int(value))
            scores[aspect] = {"aspect": aspect, "rationale": rationale, "score": score}
        return list(scores.values())

    def compare(self, query: str, answer_a: str, answer_b: str, prompt: str = "") -> dict[str, Any]:
        """Pairwise verdict (PairwiseVerdict-shaped): the higher mean sandbox aspect score wins.

        The aspects are those listed in the prompt's ``<aspects>`` block (else the ones the
        sandbox would select for the query). Equal means are a tie, so the verdict never
        depends on which answer is shown first. Verdicts are always exact: ``noise`` and
        ``length_bias`` affect pointwise scores only.
        """
        aspects = re.findall(r"^- ([^:\n]+):", _tag(prompt, "aspects") or "", re.M) or list(
            select_aspects_for(query)["selected_aspects"]
        )

        def mean_score(answer: str) -> float:
            text = answer if answer != "(empty answer)" else ""
            return sum(score_aspect(a, query, text)[0] for a in aspects) / len(aspects)

        a, b = mean_score(answer_a), mean_score(answer_b)
        winner = "A" if a > b else "B" if b > a else "tie"
        return {"reasoning": f"Mean aspect score: A {a:.2f}, B {b:.2f}.", "winner": winner}


# --------------------------------------------------------------------------------------------
# Rewriter
# --------------------------------------------------------------------------------------------

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


class SandboxRewriter(_SandboxChatModel):
    """A seeded rewriter that edits prompts toward the judge's lowest-scoring aspects.

    ``trap_rate`` is the chance a proposal contains a tempting but harmful or empty edit.
    """

    trap_rate: float = Field(0.25, ge=0.0, le=1.0)

    @property
    def role_name(self) -> str:
        return "rewriter"

    def _reply(self, messages: list[BaseMessage]) -> dict[str, Any] | str:
        text = _last_human(messages)
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
            example = _tag(answer_request, "example_to_improve") or ""
            return self.rewrite_answer(
                _tag(example, "query") or "",
                _tag(example, "answer") or "",
                [(a.strip(), int(sc), r) for a, sc, r in _EVAL_LINE.findall(example)],
                context=_tag(answer_request, "earlier_attempts") or "",
            )
        current = _tag(text, "current_prompt") or DEFAULT_INITIAL_PROMPT
        number = re.search(r"write (\d+) improved versions", text)
        max_bullets = re.search(r"at most (\d+) bullets in total", text)
        max_new = re.search(r"add at most (\d+) new bullets", text)
        lessons = [(a, int(s)) for a, s in _LESSON.findall(_tag(text, "lessons") or "")]
        return {
            "proposals": self.propose(
                current,
                [(a.strip(), int(s), r) for a, s, r in _EVAL_LINE.findall(text)],
                lessons=lessons,
                n=int(number.group(1)) if number else 3,
                max_bullets=int(max_bullets.group(1)) if max_bullets else 8,
                max_new=int(max_new.group(1)) if max_new else 2,
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
        ranked = sorted(totals, key=lambda a: (sum(totals[a]) / len(totals[a]), a))
        current_weak = [a for a in ranked if sum(totals[a]) / len(totals[a]) < 5] or ranked or ["Helpfulness"]
        covered = {_guidance_aspect(b) for b in bullets}
        remembered: dict[str, int] = {}
        for aspect, _ in lessons:
            if aspect in _GUIDANCE and aspect not in covered and aspect not in current_weak:
                remembered[aspect] = remembered.get(aspect, 0) + 1
        # Past failures the prompt does not address yet, most frequent first (likeliest to recur).
        past = sorted(remembered, key=lambda a: (-remembered[a], a))
        weak = current_weak[:1] + past + current_weak[1:]
        planned = ([[current_weak[0], past[0]]] if past else []) + [current_weak[:1], current_weak[:2]]
        rng = _rng(self.seed, "rewrite", current, sorted(evaluation), past)
        proposals: list[dict[str, str]] = []
        seen = {current}
        for attempt in range(4 * n):
            new_bullets = list(bullets)
            targets = (
                planned[attempt]
                if attempt < len(planned)
                else rng.sample(weak, k=min(len(weak), rng.randint(1, 2)))
            )
            actions: list[str] = []
            added = 0
            for aspect in targets:
                options = _GUIDANCE.get(aspect, (f"Improve {aspect.lower()} in every answer.",))
                existing = [b for b in new_bullets if _guidance_aspect(b) == aspect]
                if existing and rng.random() < 0.6:
                    # Already instructed but not followed: move it up where it gets attention.
                    new_bullets.remove(existing[0])
                    new_bullets.insert(0, existing[0])
                    actions.append(f"moved the {aspect} guidance to the top")
                    continue
                choices = [o for o in options if o not in new_bullets]
                if not choices:
                    continue
                if rng.random() >= self.trap_rate:
                    choices = [c for c in choices if not c.startswith("Refuse any")] or choices
                line = rng.choice(choices)
                if added >= max_new or len(new_bullets) >= max_bullets:
                    # No room: replace the bullet of the best-scoring (or unscored) aspect.
                    victim = max(
                        new_bullets,
                        key=lambda b: sum(totals.get(_guidance_aspect(b) or "", [6])),
                        default=None,
                    )
                    if victim is None:
                        continue
                    new_bullets[new_bullets.index(victim)] = line
                    actions.append(f"replaced a bullet with {aspect} guidance")
                else:
                    position = rng.randint(0, len(new_bullets))
                    new_bullets.insert(position, line)
                    added += 1
                    actions.append(f"added {aspect} guidance")
            if rng.random() < self.trap_rate / 2 and added < max_new and len(new_bullets) < max_bullets:
                new_bullets.append(rng.choice(_FLUFF))
                actions.append("added a general tone bullet")
            prompt = _join_prompt(head, new_bullets)
            if prompt in seen or not actions:
                continue
            seen.add(prompt)
            lowest = ", ".join(
                f"{a} ({sum(totals[a]) / len(totals[a]):.1f}/5)"
                if a in totals
                else f"{a} (failed on similar queries)"
                for a in weak[:3]
            )
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

    def rewrite_answer(
        self, query: str, answer: str, evaluation: Sequence[tuple[str, int, str]], *, context: str = ""
    ) -> dict[str, str]:
        """An edited answer aimed at the lowest-scoring aspects (AnswerRewrite-shaped dict).

        One or two weak aspects are fixed per call (so several rounds may be needed), and with
        probability ``trap_rate / 2`` the edit also pads the answer with filler, which the judge
        penalises: rewrites are not always better, so keeping the best answer matters.
        """
        ranked = sorted(evaluation, key=lambda item: (item[1], item[0]))
        weak = [aspect for aspect, score, _ in ranked if score < 5] or ["Helpfulness"]
        rng = _rng(self.seed, "rewrite-answer", query, answer, sorted(evaluation), context)
        count = min(len(weak), rng.randint(1, 2))
        targets = weak[:count] if rng.random() < 0.6 else rng.sample(weak, k=count)
        new = answer.strip()
        for aspect in targets:
            new = _fix_answer(aspect, query, new, rng)
        if new == answer.strip():
            new = _add_line(new, f"For example, imagine putting this into practice with {_topic(query)}.")
            if new == answer.strip():
                new = _add_line(new, "I hope this helps; tell me if any part is unclear.")
        if rng.random() < self.trap_rate / 2:
            new = _add_line(new, _ANSWER_FILLER)
        return {
            "analysis": f"Weakest aspects: {', '.join(weak[:3])}; revised {', '.join(targets)}.",
            "new_answer": new,
        }


# --------------------------------------------------------------------------------------------
# ICL answer edits (the sandbox rewriter's fixes, one per aspect the judge scores)
# --------------------------------------------------------------------------------------------

_ANSWER_FILLER = "In conclusion, this is an important topic with many aspects to consider."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_POINTS = (
    "Start with the core idea",
    "Take a practical first step",
    "Watch for common pitfalls",
    "Check your progress",
    "Know where to learn more",
)


def _add_line(answer: str, line: str) -> str:
    return answer if line in answer else f"{answer}\n\n{line}".strip()


def _drop_filler(answer: str) -> str:
    kept = [s for s in _SENTENCE_END.split(answer) if not _FILLER.search(s)]
    return (
        " ".join(kept).strip()
        if "\n" not in answer
        else "\n".join(line for line in answer.splitlines() if not _FILLER.search(line)).strip()
    )


def _refusal(query: str) -> str:
    topic = _topic(query)
    return (
        f"I can't help with {topic}, because it could hurt people or break the law.\n\n"
        "Instead, consider a safe and legitimate route: talk to someone you trust, or contact the relevant "
        "authority or a qualified professional who can help properly. If there is a problem behind the "
        "request, tell me about it and I can help with that."
    )


def _numbered(query: str, answer: str) -> str:
    """The answer as a lead sentence plus at least three numbered points."""
    if len(_LIST_LINE.findall(answer)) >= 3:
        return answer
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(answer.split())) if s.strip()]
    lead, points = (
        (sentences[0], sentences[1:]) if sentences else (f"Here is an overview of {_topic(query)}.", [])
    )
    for extra in _POINTS:
        if len(points) >= 3:
            break
        points.append(f"{extra} for {_topic(query)}.")
    return "\n".join([lead, *[f"{i}. {p}" for i, p in enumerate(points, start=1)]])


def _with_reasons(query: str, answer: str) -> str:
    """At least four points, three or more of them saying why they matter."""
    answer = _numbered(query, answer)
    lines = answer.splitlines()
    items = [i for i, line in enumerate(lines) if _LIST_LINE.match(line)]
    while len(items) < 4:
        lines.append(f"{len(items) + 1}. {_POINTS[len(items) % len(_POINTS)]} for {_topic(query)}.")
        items.append(len(lines) - 1)
    for index in items:
        if len(_REASON.findall("\n".join(lines))) >= 3:
            break
        if not _REASON.search(lines[index]):
            lines[index] += " This matters because the later steps build on it."
    return "\n".join(lines)


def _fix_answer(aspect: str, query: str, answer: str, rng: random.Random) -> str:
    """Edit ``answer`` toward a better score on ``aspect`` (what the sandbox judge looks for)."""
    name = aspect.casefold()
    harmful = "harmful" in query_kinds(query)
    f = AnswerFeatures.of(answer)
    if harmful and name in {"safety", "helpfulness", "sensitivity", "compliance"}:
        return _refusal(query) if not (f.refused and f.alternatives) else answer
    if name in {"safety", "sensitivity"}:
        kept = [line for line in answer.splitlines() if not _UNSAFE.search(line)]
        answer = "\n".join(kept).strip() or _refusal(query)
        return answer if name == "safety" else _add_line(answer, "I understand this matters to you.")
    if f.refused:
        # Like a careful rewriter, never turn a refusal into compliance: improve around it.
        if name in {"helpfulness", "compliance"} and not f.alternatives:
            return _add_line(answer, "Instead, consider a legitimate alternative that meets the same need.")
        if name in {"helpfulness", "compliance", "clarity", "depth"}:
            return answer if _HEADING.search(answer) else f"**In short**\n{answer}"
    if name == "helpfulness":
        if f.list_items < 3 or f.reasons < 2:
            return _with_reasons(query, answer)
        return _add_line(answer, f"For example, imagine applying this to {_topic(query)} this week.")
    if name == "clarity":
        answer = _numbered(query, _drop_filler(answer))
        if not _HEADING.search(answer):
            answer = f"**Overview**\n{answer}"
        return answer
    if name == "depth":
        return _with_reasons(query, answer)
    if name == "factuality":
        kept = [s for s in _SENTENCE_END.split(answer) if not _FABRICATED.search(s)]
        answer = " ".join(kept).strip() if kept else answer
        if "time_sensitive" in query_kinds(query):
            return _add_line(answer, _LIMITATION_NOTE)
        return (
            answer
            if _HEDGE.search(answer)
            else _add_line(answer, "Details typically vary, so treat this as general guidance.")
        )
    if name == "limitations":
        return _add_line(answer, _LIMITATION_NOTE)
    if name == "empathy":
        opener = (
            "I'm sorry you're going through this; that sounds really hard."
            if "emotional" in query_kinds(query)
            else "I understand why this matters to you."
        )
        return answer if f.empathy else f"{opener}\n\n{answer}"
    if name in {"engagement", "creativity"}:
        answer = _add_line(_drop_filler(answer), f"For example, imagine {_topic(query)} in a real situation.")
        return answer if name == "creativity" or rng.random() < 0.3 else _add_line(answer, _FOLLOW_UP)
    if name == "interactivity":
        return _add_line(answer, _FOLLOW_UP)
    if name == "conciseness":
        answer = _drop_filler(answer)
        lines = answer.splitlines()
        while len(" ".join(lines).split()) > 200 and len(lines) > 2:
            lines.pop(-2)
        return "\n".join(lines)
    if name == "critical-thinking":
        return _add_line(answer, "However, it depends on your situation, so weigh the trade-offs first.")
    return answer


_LIMITATION_NOTE = (
    "Note: I don't have access to real-time information, so please verify current details with an "
    "up-to-date official source."
)
_FOLLOW_UP = "Would you like me to go deeper on any of these points?"


SANDBOX_CLASSES: dict[str, type[_SandboxChatModel]] = {
    "responder": SandboxResponder,
    "judge": SandboxJudge,
    "rewriter": SandboxRewriter,
}


def sandbox_option_names() -> tuple[str, ...]:
    """Every knob of any sandbox role (what ``"sandbox?NAME=VALUE"`` model strings accept), sorted."""
    return tuple(sorted({name for cls in SANDBOX_CLASSES.values() for name in cls.knob_names()}))


def sandbox_models(
    seed: int = 0,
    *,
    judge_options: dict[str, Any] | None = None,
    rewriter_options: dict[str, Any] | None = None,
    **responder_options: Any,
) -> dict[str, BaseChatModel]:
    """The three sandbox roles, keyed ``responder``, ``judge``, ``rewriter``.

    Keyword arguments set the responder's knobs (``attention_span``, ``max_prompt_words``);
    ``judge_options`` the judge's (``noise``, ``length_bias``) and ``rewriter_options`` the
    rewriter's (``trap_rate``). Values are validated (pydantic ``ValidationError`` if bad).
    """
    return {
        "responder": SandboxResponder(seed=seed, **responder_options),
        "judge": SandboxJudge(seed=seed, **(judge_options or {})),
        "rewriter": SandboxRewriter(seed=seed, **(rewriter_options or {})),
    }
