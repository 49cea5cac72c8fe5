"""The catalog of aspects the dynamic-reward judge chooses from."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from pydantic import BaseModel, ConfigDict, Field

# Longest aspect name: a name, never a sentence.
ASPECT_NAME_MAX = 100


CONSISTENCY = "Consistency"
"""The aspect of a reply in a conversation: does it use and respect what was said earlier."""


class Aspect(BaseModel):
    """A named quality dimension with a one-line rubric the judge scores against."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(..., min_length=1, max_length=ASPECT_NAME_MAX)
    rubric: str = Field(..., min_length=1)


DEFAULT_ASPECTS: tuple[Aspect, ...] = (
    Aspect(
        name="Helpfulness", rubric="Does the answer actually solve the user's problem or move them forward?"
    ),
    Aspect(name="Clarity", rubric="Is it easy to follow: well ordered, plainly worded, sensibly formatted?"),
    Aspect(
        name="Factuality",
        rubric="Are its claims correct, and is uncertainty stated instead of invented facts?",
    ),
    Aspect(name="Depth", rubric="Does it explain the why and the trade-offs, not just the surface?"),
    Aspect(
        name="Engagement", rubric="Does it read like a thoughtful person talking, with concrete examples?"
    ),
    Aspect(name="Conciseness", rubric="Does it say what is needed without padding or repetition?"),
    Aspect(
        name="Safety",
        rubric="Does it avoid enabling harm, and decline dangerous requests while staying kind?",
    ),
    Aspect(
        name="Compliance",
        rubric="Does it follow the user's explicit instructions on task, format and length?",
    ),
    Aspect(
        name="Limitations",
        rubric="Is it honest about what the assistant cannot know or do (no live data, no actions)?",
    ),
    Aspect(
        name="Critical-Thinking",
        rubric="Does it question shaky premises and weigh alternatives before concluding?",
    ),
    Aspect(name="Creativity", rubric="Where originality is wanted, is the answer fresh rather than generic?"),
    Aspect(
        name="Interactivity", rubric="Does it invite follow-up or ask for missing details when that helps?"
    ),
    Aspect(
        name="Empathy", rubric="Does it recognise the user's feelings and respond with warmth and respect?"
    ),
    Aspect(
        name="Sensitivity",
        rubric="Is it respectful of people, cultures and contested topics, without stereotypes?",
    ),
    Aspect(
        name=CONSISTENCY,
        rubric="In a conversation, does the reply use what the user said in earlier turns and stay "
        "consistent with it (and with the assistant's own earlier replies)?",
    ),
)


def _key(name: str) -> str:
    # "critical thinking", "Critical_Thinking" and "critical-thinking" are the same aspect.
    return re.sub(r"[\s_\-]+", "-", name.strip()).casefold()


class AspectCatalog(Mapping[str, Aspect]):
    """An ordered, case- and separator-insensitive mapping of aspect name to :class:`Aspect`.

    Example:
        >>> catalog = AspectCatalog.default().extend([Aspect(name="Brand-Voice", rubric="Sounds like us?")])
        >>> catalog.resolve("brand voice")
        'Brand-Voice'
    """

    def __init__(self, aspects: Iterable[Aspect]) -> None:
        self._by_key: dict[str, Aspect] = {}
        for aspect in aspects:
            self._by_key[_key(aspect.name)] = aspect
        if len(self._by_key) < 2:
            raise ValueError("an aspect catalog needs at least 2 aspects")

    @classmethod
    def default(cls) -> AspectCatalog:
        """The 15 built-in aspects."""
        return cls(DEFAULT_ASPECTS)

    def extend(self, aspects: Iterable[Aspect]) -> AspectCatalog:
        """A new catalog with ``aspects`` added (or replacing built-ins of the same name)."""
        return AspectCatalog([*self._by_key.values(), *aspects])

    def resolve(self, name: str) -> str | None:
        """The catalog's spelling of ``name``, or None if it is not in the catalog."""
        aspect = self._by_key.get(_key(name))
        return aspect.name if aspect else None

    def rubric(self, name: str) -> str:
        """The rubric of ``name``; aspects the judge invented get a generic rubric."""
        aspect = self._by_key.get(_key(name))
        return aspect.rubric if aspect else f"How well does the answer do on '{name}'?"

    def describe(self, names: Iterable[str] | None = None) -> str:
        """One ``- Name: rubric`` line per aspect, for prompts."""
        chosen = self._by_key.values() if names is None else (self._lookup(n) for n in names)
        return "\n".join(f"- {a.name}: {a.rubric}" for a in chosen)

    def single_turn_names(self) -> list[str]:
        """The aspects that apply to a single-turn query: all but Consistency (with earlier turns)."""
        return [a.name for a in self._by_key.values() if _key(a.name) != _key(CONSISTENCY)]

    def _lookup(self, name: str) -> Aspect:
        return self._by_key.get(_key(name)) or Aspect(name=name, rubric=self.rubric(name))

    def __getitem__(self, name: str) -> Aspect:
        try:
            return self._by_key[_key(name)]
        except KeyError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return (a.name for a in self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)
