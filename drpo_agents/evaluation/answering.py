"""Answering held-out items under a setup and scoring the replies: one reply, or a conversation
given as the user's turns, answered turn by turn after the setup's own earlier replies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from langchain_core.runnables import RunnableConfig

from drpo_agents.agents import Judge, Responder
from drpo_agents.aspects import CONSISTENCY
from drpo_agents.conversations import Turn, history_text
from drpo_agents.datasets import Query, is_multi_turn
from drpo_agents.errors import error_text, recoverable_errors
from drpo_agents.evaluation.records import AnswerRecord, TurnRecord
from drpo_agents.evaluation.setups import EvaluationSetup
from drpo_agents.infra.calls import CallPlan
from drpo_agents.usage import UsageByRole, merge_usage, usage_of


class Answerer:
    """The evaluation's responders (one per setup) and judge, with the usage they added up."""

    def __init__(self, responders: Mapping[str, Responder], judge: Judge, aspects: Sequence[str]) -> None:
        self.responders = responders
        self.judge = judge
        self.aspects = list(aspects)
        # A reply after earlier turns is also judged on Consistency (does it use and respect them).
        self.conversation_aspects = self.aspects + ([CONSISTENCY] if CONSISTENCY not in self.aspects else [])
        self.usage: UsageByRole = {}

    def aspects_for(self, query: Query) -> list[str]:
        """The aspects ``query``'s answers are judged on: the evaluation's, and for a conversation
        also Consistency (does the reply use and respect the earlier turns)."""
        return self.conversation_aspects if is_multi_turn(query) else self.aspects

    def plan_answer(
        self, setup: EvaluationSetup, query: Query, cfg: RunnableConfig
    ) -> CallPlan[AnswerRecord]:
        """Answer ``query`` under ``setup`` and score the answer on every aspect; a conversation
        given as the user's turns is answered turn by turn, each reply after the setup's own."""
        record = AnswerRecord(setup=setup.name)
        if "turns" in query:
            return (yield from self._plan_turns(setup, query, record, cfg))
        try:
            reply = yield from self._plan_reply(setup, query["query"], query.get("history", []), query, cfg)
        except recoverable_errors() as exc:
            record.error = error_text(exc)
            return record
        record.answer, record.scores, record.mean = reply.answer, reply.scores, reply.mean
        return record

    def _plan_turns(
        self, setup: EvaluationSetup, query: Query, record: AnswerRecord, cfg: RunnableConfig
    ) -> CallPlan[AnswerRecord]:
        history: list[Turn] = []
        record.turns = []
        try:
            for turn in query["turns"]:
                reply = yield from self._plan_reply(setup, turn, history, query, cfg)
                record.turns.append(reply)
                history += [Turn(role="user", content=turn), Turn(role="assistant", content=reply.answer)]
        except recoverable_errors() as exc:
            record.error = f"turn {len(record.turns) + 1}: {error_text(exc)}"
            return record
        record.answer = history_text(history)
        record.scores = [s for t in record.turns for s in t.scores]
        means = [t.mean for t in record.turns if t.mean is not None]
        record.mean = sum(means) / len(means) if means else None
        return record

    def _plan_reply(
        self, setup: EvaluationSetup, text: str, history: Sequence[Turn], query: Query, cfg: RunnableConfig
    ) -> CallPlan[TurnRecord]:
        """One reply to ``text`` after ``history``, scored (Consistency too when there is history)."""
        response = yield from self.responders[setup.name].plan_respond(
            setup.system_prompt, text, config=cfg, history=history, app_system=query.get("system", "")
        )
        self.usage = merge_usage(self.usage, usage_of("responder", response.messages))
        aspects = self.conversation_aspects if history else self.aspects
        scored = yield from self.judge.plan_score(text, response.answer, aspects, config=cfg, history=history)
        self.usage = merge_usage(self.usage, usage_of("judge", scored.messages))
        return TurnRecord(answer=response.answer, scores=list(scored.value.scores), mean=scored.value.reward)
