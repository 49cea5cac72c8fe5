"""The sandbox judge: heuristic scores with optional noise and length bias, and pairwise verdicts."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from langchain_core.messages import BaseMessage
from pydantic import Field

from drpo_agents.json_types import JsonObject
from drpo_agents.models.sandbox.chat import SandboxChatModel, earlier_user_turns, last_request, tagged
from drpo_agents.models.sandbox.features import clamp_score
from drpo_agents.models.sandbox.scoring import score_aspect, select_aspects_for
from drpo_agents.models.sandbox.world import seeded_rng

# Answers of this many words get no length bonus from a length-biased judge.
_NEUTRAL_LENGTH = 80


def _length_bonus(answer: str, length_bias: float) -> float:
    """A verbosity-loving judge's bonus: ``length_bias * log2(words / 80)``, negative below 80 words."""
    return length_bias * math.log2(max(1, len(answer.split())) / _NEUTRAL_LENGTH)


class SandboxJudge(SandboxChatModel):
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

    def _reply(self, messages: list[BaseMessage]) -> JsonObject | str:
        text = last_request(messages)
        query = tagged(text, "query") or text
        if "<answer_a>" in text and "<answer_b>" in text:
            return self.compare(query, tagged(text, "answer_a") or "", tagged(text, "answer_b") or "", text)
        answer = tagged(text, "answer")
        earlier = earlier_user_turns(text)
        if answer is None:
            return select_aspects_for(query, earlier)
        aspects = re.findall(r"^- ([^:\n]+):", tagged(text, "aspects") or "", re.M) or [
            "Helpfulness",
            "Clarity",
        ]
        return {"scores": self.score_answer(query, answer, aspects, earlier)}

    def score_answer(
        self, query: str, answer: str, aspects: Sequence[str], earlier: str = ""
    ) -> list[JsonObject]:
        """AspectScore-shaped dicts for ``answer`` on ``aspects`` (the knobs applied; see the class);
        ``earlier``: what the user said in earlier turns."""
        text = answer if answer != "(empty answer)" else ""
        noisy = bool(self.noise or self.length_bias)
        rng = (
            seeded_rng(self.seed, "judge", query, answer, list(aspects))
            if noisy
            else seeded_rng(self.seed, "judge", query, answer)
        )
        bonus = _length_bonus(text, self.length_bias) if self.length_bias else 0.0
        scores = {}
        for aspect in aspects:
            score, rationale = score_aspect(aspect, query, text, earlier)
            if noisy:
                value = score + bonus
                if self.noise and rng.random() < self.noise:
                    value += rng.choice((-1, 1))
                if self.length_bias:
                    floor = math.floor(value)
                    value = floor + (rng.random() < value - floor)
                score = clamp_score(int(value))
            scores[aspect] = {"aspect": aspect, "rationale": rationale, "score": score}
        return list(scores.values())

    def compare(self, query: str, answer_a: str, answer_b: str, prompt: str = "") -> JsonObject:
        """Pairwise verdict (PairwiseVerdict-shaped): the higher mean sandbox aspect score wins.

        The aspects are those listed in the prompt's ``<aspects>`` block (else the ones the
        sandbox would select for the query). Equal means are a tie, so the verdict never
        depends on which answer is shown first. Verdicts are always exact: ``noise`` and
        ``length_bias`` affect pointwise scores only.
        """
        earlier = earlier_user_turns(prompt)
        aspects = re.findall(r"^- ([^:\n]+):", tagged(prompt, "aspects") or "", re.M) or list(
            select_aspects_for(query, earlier)["selected_aspects"]
        )

        def mean_score(answer: str) -> float:
            text = answer if answer != "(empty answer)" else ""
            return sum(score_aspect(a, query, text, earlier)[0] for a in aspects) / len(aspects)

        a, b = mean_score(answer_a), mean_score(answer_b)
        winner = "A" if a > b else "B" if b > a else "tie"
        return {"reasoning": f"Mean aspect score: A {a:.2f}, B {b:.2f}.", "winner": winner}
