"""The sandbox responder: a weak assistant whose behaviour follows the directives in its system prompt."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import Field

from drpo_agents.conversations import Turn, icl_layout_note, is_icl_example
from drpo_agents.json_types import JsonObject
from drpo_agents.models.sandbox.answers import context_line
from drpo_agents.models.sandbox.chat import SandboxChatModel, last_request, tagged
from drpo_agents.models.sandbox.features import LIST_LINE, REFUSAL
from drpo_agents.models.sandbox.world import (
    PRESETS,
    SandboxWorld,
    prompt_directives,
    query_kinds,
    salient_details,
    seeded_rng,
    topic_of,
)


class SandboxResponder(SandboxChatModel):
    """A weak simulated assistant whose behaviour follows the directives in its system prompt."""

    attention_span: int = 5
    max_prompt_words: int = 170
    preset: Literal["", "smollm2"] = Field(
        "", description="A named world (world.PRESETS) calibrated to a real model; '' is the default world."
    )

    @property
    def role_name(self) -> str:
        return "responder"

    def world(self) -> SandboxWorld:
        """The world this responder lives in: its preset's, with the span and length knobs applied
        where they were changed from their defaults."""
        base = PRESETS[self.preset] if self.preset else SandboxWorld()
        fields = type(self).model_fields
        changes = {
            name: getattr(self, name)
            for name in ("attention_span", "max_prompt_words")
            if getattr(self, name) != fields[name].default
        }
        return replace(base, **changes)

    def behaviours(
        self, system_prompt: str, query: str, examples: Sequence[str] = (), context_shown: bool = False
    ) -> set[str]:
        """Which behaviours this prompt and these ICL answers trigger for ``query`` (seeded);
        ``context_shown``: an ICL example conversation's answer reuses what its user said earlier."""
        world = self.world()
        rng = seeded_rng(self.seed, system_prompt, query)
        words = len(system_prompt.split())
        probability = dict(world.base_rates)
        for position, name in enumerate(prompt_directives(system_prompt)):
            probability[name] = max(probability.get(name, 0.0), world.follow_rate(name, position, words))
        # ICL examples are imitated: a refusal or a numbered answer in context makes it likelier.
        if any(REFUSAL.search(e) for e in examples):
            probability["refuse_harm"] = max(probability["refuse_harm"], world.icl_refusal)
        if any(len(LIST_LINE.findall(e)) >= 3 for e in examples):
            probability["structure"] = max(probability["structure"], world.icl_structure)
        if context_shown:
            probability["context"] = max(probability.get("context", 0.0), world.icl_context)
        return {name for name, p in sorted(probability.items()) if rng.random() < p}

    def answer(
        self,
        system_prompt: str,
        query: str,
        examples: Sequence[str] = (),
        earlier: str = "",
        context_shown: bool = False,
    ) -> str:
        """The simulated answer to ``query`` under ``system_prompt``; ``earlier``: what the user said
        in the conversation's earlier turns, which it reuses only when the prompt asks it to or an
        ICL example conversation shows it (``context_shown``)."""
        kinds = query_kinds(query)
        does = self.behaviours(system_prompt, query, examples, context_shown)
        details = salient_details(earlier) if earlier and "context" in does else []
        topic = topic_of(query)
        rng = seeded_rng(self.seed, "text", system_prompt, query)
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
        if details:
            lines.append(context_line(details))
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

    def _reply(self, messages: list[BaseMessage]) -> JsonObject | str:
        examples_shown = _icl_examples(messages[:-1])
        system = "\n".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        # The note on example conversations describes the context, it is no directive.
        note = icl_layout_note([[_turn(m) for m in turns] for turns in examples_shown])
        system = system.replace(f"\n\n{note}", "").replace(note, "") if note else system
        query = last_request(messages)
        # ICL examples are marked (by the search and by with_alignment); the other turns before the
        # request are the conversation's own.
        examples = [str(m.content) for m in messages[:-1] if isinstance(m, AIMessage) and is_icl_example(m)]
        earlier = "\n".join(
            str(m.content) for m in messages[:-1] if isinstance(m, HumanMessage) and not is_icl_example(m)
        )
        if not system and "<instructions>" in query:
            # Completion mode: the whole template arrives as one user turn.
            system = tagged(query, "instructions") or ""
            examples = re.findall(r"<answer>\s*(.*?)\s*</answer>", query, re.DOTALL)
            queries = re.findall(r"<query>\s*(.*?)\s*</query>", query, re.DOTALL)
            query = queries[-1] if queries else query
        return self.answer(system, query, examples, earlier, _shows_context(examples_shown))


def _icl_examples(messages: Sequence[BaseMessage]) -> list[list[BaseMessage]]:
    """The ICL examples placed in ``messages``, each as its turns (they share the id prefix
    ``drpo-icl-N-``)."""
    examples: dict[str, list[BaseMessage]] = {}
    for message in messages:
        if is_icl_example(message):
            examples.setdefault(str(message.id).split("-")[2], []).append(message)
    return list(examples.values())


def _turn(message: BaseMessage) -> Turn:
    return Turn(role="user" if isinstance(message, HumanMessage) else "assistant", content=message.text)


def _shows_context(examples: Sequence[Sequence[BaseMessage]]) -> bool:
    """Whether an ICL example that is a conversation answers with every detail its user gave in
    the example's earlier turns."""
    for turns in examples:
        earlier = "\n".join(m.text for m in turns[:-2] if isinstance(m, HumanMessage))
        details = salient_details(earlier)
        if details and all(d.casefold() in turns[-1].text.casefold() for d in details):
            return True
    return False
