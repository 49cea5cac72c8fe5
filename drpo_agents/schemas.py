"""Pydantic schemas of every structured LLM output, and of the records a run keeps.

The LLM-facing schemas accept the shapes real models (and the reference DRPO data) produce:
nested or flat aspect selections, scores as strings ("4", "4/5"), evaluations keyed by aspect.
Anything that cannot be read as a 1-5 score is a validation error, never a silent default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drpo_agents.conversations import Turn
from drpo_agents.json_types import JsonSchema

# Length caps keep constrained decoding of small models finite; they are far above what
# a sensible answer needs (the reference data's longest reasoning is ~900 characters).
_SHORT_TEXT = 2_000
_PROMPT_TEXT = 8_000

_SCORE_PATTERN = re.compile(r"^\s*(\d+(?:\.0+)?)\s*(?:/\s*5(?:\.0+)?)?\s*$")


def parse_score(value: Any) -> int:
    """Read a 1-5 score from an int, a float with no fraction, or a string like "4" or "4/5".

    Raises:
        ValueError: for anything else, including out-of-range values such as 7 or "8/10".
    """
    if isinstance(value, bool):
        raise ValueError(f"score must be a number from 1 to 5, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and (match := _SCORE_PATTERN.match(value)):
        number = int(float(match.group(1)))
    else:
        raise ValueError(f"score must be a whole number from 1 to 5 (e.g. 4 or '4/5'), got {value!r}")
    if not 1 <= number <= 5:
        raise ValueError(f"score must be between 1 and 5, got {value!r}")
    return number


class QueryAnalysis(BaseModel):
    """The judge's reading of a query before it chooses aspects."""

    model_config = ConfigDict(extra="ignore")

    main_topic: str = Field("", max_length=_SHORT_TEXT)
    user_intent: str = Field("", max_length=_SHORT_TEXT)
    ambiguities: str = Field("", max_length=_SHORT_TEXT)
    response_format: str = Field("", max_length=_SHORT_TEXT)
    challenges: str = Field("", max_length=_SHORT_TEXT)


class AspectSelection(BaseModel):
    """Which aspects matter for one query, and why (the first step of the dynamic reward)."""

    model_config = ConfigDict(extra="ignore")

    query_analysis: QueryAnalysis | None = None
    reasoning: str = Field(..., max_length=_SHORT_TEXT, description="Why these aspects matter here.")
    selected_aspects: list[str] = Field(
        ..., min_length=2, max_length=5, description="2 to 5 aspect names from the catalog."
    )

    @model_validator(mode="before")
    @classmethod
    def _flatten_nested(cls, data: Any) -> Any:
        # The reference data nests the choice under "aspects_selection".
        if isinstance(data, dict) and isinstance(data.get("aspects_selection"), dict):
            nested = data["aspects_selection"]
            data = {**{k: v for k, v in data.items() if k != "aspects_selection"}, **nested}
        return data

    @field_validator("selected_aspects")
    @classmethod
    def _strip_and_dedupe(cls, names: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for name in names:
            cleaned = name.strip()
            if not cleaned:
                raise ValueError("aspect names must not be empty")
            seen.setdefault(cleaned.casefold(), cleaned)
        if len(seen) < 2:
            raise ValueError("select at least 2 different aspects")
        return list(seen.values())


class AspectScore(BaseModel):
    """One aspect's 1-5 score of an answer, with the judge's reason."""

    model_config = ConfigDict(extra="ignore")

    aspect: str = Field(..., min_length=1, max_length=100)
    rationale: str = Field(..., max_length=_SHORT_TEXT)
    score: int = Field(..., ge=1, le=5)

    @field_validator("score", mode="before")
    @classmethod
    def _read_score(cls, value: Any) -> int:
        return parse_score(value)


class AnswerEvaluation(BaseModel):
    """The judge's scores of one answer on the selected aspects."""

    model_config = ConfigDict(extra="ignore")

    scores: list[AspectScore] = Field(..., min_length=1, max_length=16)

    @model_validator(mode="before")
    @classmethod
    def _accept_mapping(cls, data: Any) -> Any:
        # Reference shape: {"Helpfulness": {"rationale": ..., "score": "4"}, ...}
        if (
            isinstance(data, dict)
            and data
            and "scores" not in data
            and all(isinstance(v, dict) and "score" in v for v in data.values())
        ):
            return {"scores": [{"aspect": name, **value} for name, value in data.items()]}
        if isinstance(data, dict) and isinstance(data.get("scores"), dict):
            return {"scores": [{"aspect": n, **v} for n, v in data["scores"].items()]}
        return data

    @property
    def reward(self) -> float:
        """The dynamic reward: mean score over the evaluated aspects."""
        return sum(s.score for s in self.scores) / len(self.scores)

    def score_of(self, aspect: str) -> int | None:
        """The score given to ``aspect`` (case-insensitive), or None if it was not scored."""
        key = aspect.casefold()
        return next((s.score for s in self.scores if s.aspect.casefold() == key), None)


class PromptProposal(BaseModel):
    """One new system prompt proposed by the rewriter."""

    model_config = ConfigDict(extra="ignore")

    analysis: str = Field("", max_length=_SHORT_TEXT, description="What the critique says is missing.")
    thought: str = Field("", max_length=_SHORT_TEXT, description="How the new prompt addresses it.")
    new_prompt: str = Field(..., min_length=1, max_length=_PROMPT_TEXT)

    @field_validator("new_prompt")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("new_prompt must not be blank")
        return text.strip()


class PromptProposals(BaseModel):
    """The rewriter's answer: several alternative system prompts."""

    model_config = ConfigDict(extra="ignore")

    proposals: list[PromptProposal] = Field(..., min_length=1, max_length=16)
    _rejected: list[str] = PrivateAttr(default_factory=list)

    @property
    def rejected(self) -> list[str]:
        """Why proposals of this reply were dropped (kept out of the model-facing schema)."""
        return self._rejected


# Each new_prompt's description in the schema sent to the model: the bullet budget as a sentence a
# model reads, fixed here (not in a template) so read_proposal_limits can read it back (drpo_agents.agents.rewriter.proposals_schema).
_NEW_PROMPT_RULE: Final = (
    "The full new system prompt: at most {max_bullets} bullet lines in total, "
    "at most {max_new_bullets} more than the current prompt."
)
_NEW_PROMPT_RULE_READ = re.compile(
    re.escape(_NEW_PROMPT_RULE)
    .replace(re.escape("{max_bullets}"), r"(?P<max_bullets>\d+)")
    .replace(re.escape("{max_new_bullets}"), r"(?P<max_new_bullets>\d+)")
)


@dataclass(frozen=True)
class ProposalLimits:
    """What a rewrite request asks for: ``count`` proposals, each within the bullet budget."""

    count: int = 3
    max_bullets: int = 8
    max_new_bullets: int = 2


def new_prompt_rule(limits: ProposalLimits) -> str:
    """The bullet budget of ``limits`` as the sentence describing each proposal's ``new_prompt``."""
    return _NEW_PROMPT_RULE.format(max_bullets=limits.max_bullets, max_new_bullets=limits.max_new_bullets)


def read_proposal_limits(schema: JsonSchema) -> ProposalLimits | None:
    """The limits :func:`drpo_agents.agents.rewriter.proposals_schema` put in ``schema`` (as sent, or as a tool's
    parameters), or None when it carries none (e.g. the bare :class:`PromptProposals` schema)."""
    proposals = schema.get("properties", {}).get("proposals", {})
    new_prompt = proposals.get("items", {}).get("properties", {}).get("new_prompt", {})
    budget = _NEW_PROMPT_RULE_READ.fullmatch(str(new_prompt.get("description", "")))
    if budget is None or not isinstance(proposals.get("maxItems"), int):
        return None
    return ProposalLimits(
        count=proposals["maxItems"],
        max_bullets=int(budget["max_bullets"]),
        max_new_bullets=int(budget["max_new_bullets"]),
    )


class ICLExample(BaseModel):
    """An in-context example: a query and a model answer to show the responder; with ``history``,
    the last exchange of a conversation (the earlier turns are shown before it)."""

    model_config = ConfigDict(extra="ignore")

    query: str
    answer: str
    id: str | None = None
    history: list[Turn] = Field(default_factory=list, description="The conversation's earlier turns.")

    def turns(self) -> list[Turn]:
        """The example as turns: its earlier turns, the query, the answer."""
        return [
            *self.history,
            Turn(role="user", content=self.query),
            Turn(role="assistant", content=self.answer),
        ]

    @field_validator("history")
    @classmethod
    def _no_empty_turns(cls, turns: list[Turn]) -> list[Turn]:
        if any(not t["content"].strip() for t in turns):
            raise ValueError("an earlier turn (history) is empty")
        return turns

    @field_validator("query", "answer")
    @classmethod
    def _stripped(cls, text: str, info: ValidationInfo) -> str:
        # The reference files wrap answers in <START>...<END>.
        stripped = text.strip()
        if stripped.startswith("<START>") and stripped.endswith("<END>"):
            stripped = stripped[len("<START>") : -len("<END>")].strip()
        if not stripped:
            raise ValueError(f"the {info.field_name} is empty")
        return stripped


class AnswerRewrite(BaseModel):
    """The rewriter's improved version of an in-context example's answer (ICL optimisation stage)."""

    model_config = ConfigDict(extra="ignore")

    analysis: str = Field("", max_length=_SHORT_TEXT, description="What the critique says is missing.")
    new_answer: str = Field(..., min_length=1, max_length=_PROMPT_TEXT, description="The full new answer.")

    @field_validator("new_answer")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        stripped = text.strip()
        # The reference ICL files wrap answers in <START>...<END>; a model may imitate that.
        if stripped.startswith("<START>") and stripped.endswith("<END>"):
            stripped = stripped[len("<START>") : -len("<END>")].strip()
        if not stripped:
            raise ValueError("new_answer must not be blank")
        return stripped


class PairwiseVerdict(BaseModel):
    """The judge's comparison of two answers to one query: which one is better, or a tie."""

    model_config = ConfigDict(extra="ignore")

    reasoning: str = Field("", max_length=_SHORT_TEXT, description="Why one answer is better (or neither).")
    winner: Literal["A", "B", "tie"] = Field(..., description='"A", "B" or "tie".')

    @field_validator("winner", mode="before")
    @classmethod
    def _read_winner(cls, value: Any) -> Any:
        # Models write "Answer A", "b", "Tie", "TIE." ...; anything else stays a validation error.
        if isinstance(value, str):
            cleaned = re.sub(r"^(answer|response)\s+", "", value.strip().strip(".").strip(), flags=re.I)
            if cleaned.casefold() == "tie":
                return "tie"
            if cleaned.upper() in {"A", "B"}:
                return cleaned.upper()
        return value
