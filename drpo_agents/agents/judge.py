"""The dynamic-reward judge: picks the aspects that matter for a query, scores an answer on them, compares two."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from drpo_agents.agents.jury import JuryVerdict, combine_jurors
from drpo_agents.agents.structured_agent import StructuredAgent
from drpo_agents.aspects import ASPECT_NAME_MAX, AspectCatalog
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.conversations import Turn, conversation_block
from drpo_agents.infra.calls import CallPlan, ParallelPlans, arun_plan, run_plan
from drpo_agents.json_types import JsonSchema
from drpo_agents.prompts import render_prompt
from drpo_agents.schemas import AnswerEvaluation, AspectScore, AspectSelection, PairwiseVerdict
from drpo_agents.structured import StructuredMethods, StructuredResult, provider_schema


def scoring_schema(aspects: Sequence[str]) -> JsonSchema:
    """The schema sent for scoring ``aspects``: each score names one of them, and there are at
    least as many scores. A server that decodes under a grammar (llama.cpp, Ollama, vLLM) then
    cannot invent aspect names or leave one out; replies are still validated locally."""
    schema = provider_schema(AnswerEvaluation)
    scores = schema["properties"]["scores"]
    scores["items"]["properties"]["aspect"] = {"type": "string", "enum": list(dict.fromkeys(aspects))}
    scores["minItems"] = len(set(aspects)) or 1
    return schema


class Judge(StructuredAgent):
    """Selects 2-5 aspects per query and scores answers 1-5 on them; the reward is the mean.

    The evaluation harness also asks it which of two answers is better (:meth:`plan_pairwise`).

    Args:
        model: the judge chat model (a strong one: the search is only as good as its reward).
        selection_model: model for aspect selection; defaults to ``model`` (pass a cached copy
            so a query is never analysed twice, even across runs).
        jury: further judge models; with them every answer is scored by ``model`` and each
            of them, and the scores are aggregated per aspect by median.
        jury_size: jurors in all when ``jury`` is empty: ``model`` is asked ``jury_size``
            times, each time with the aspects listed in a rotated order.
        catalog: aspects to choose from; the judge may still name a new one when none fits.
        method: how structured output is obtained (see :mod:`drpo_agents.structured`).
        max_retries: re-asks after an invalid or incomplete reply.
        methods: the run's memory of the structured-output method each model accepted.
    """

    role = "judge"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        catalog: AspectCatalog | None = None,
        method: StructuredOutputMethod = "auto",
        max_retries: int = 2,
        prompts_dir: Path | None = None,
        selection_model: BaseChatModel | None = None,
        jury: Sequence[BaseChatModel] = (),
        jury_size: int = 1,
        methods: StructuredMethods | None = None,
    ) -> None:
        super().__init__(
            model, method=method, max_retries=max_retries, prompts_dir=prompts_dir, methods=methods
        )
        self.selection_model = selection_model or model
        self.catalog = catalog or AspectCatalog.default()
        self.jurors: list[BaseChatModel] = [model, *jury] if jury else [model] * max(1, jury_size)

    def plan_select_aspects(
        self, query: str, *, config: RunnableConfig | None = None, history: Sequence[Turn] = ()
    ) -> CallPlan[StructuredResult[AspectSelection]]:
        """Choose the aspects a grader should score answers to ``query`` on (a call plan);
        ``history``: the conversation's earlier turns, which the judge sees before the query."""
        prompt = render_prompt(
            "aspect_selection",
            self.prompts_dir,
            query=query,
            conversation=conversation_block(history),
            # Consistency (with earlier turns) is offered only where there are earlier turns.
            aspect_catalog=self.catalog.describe(None if history else self.catalog.single_turn_names()),
        )

        def canonical_names(selection: AspectSelection) -> AspectSelection:
            limit = ASPECT_NAME_MAX
            bad = [n for n in selection.selected_aspects if not n.strip() or len(n) > limit]
            if bad:
                # A sentence is not an aspect name (weak models write one): re-asked, never a crash.
                raise ValueError(
                    f"aspect names must be short names (1-{limit} characters) from the catalog, "
                    f"got {bad[0][:80]!r}"
                )
            names = [self.catalog.resolve(n) or n for n in selection.selected_aspects]
            return selection.model_copy(update={"selected_aspects": list(dict.fromkeys(names))})

        return (
            yield from self.plan_ask(
                AspectSelection,
                "judge_system",
                prompt,
                step="select_aspects",
                config=config,
                validate=canonical_names,
                model=self.selection_model,
            )
        )

    def plan_score(
        self,
        query: str,
        answer: str,
        aspects: Sequence[str],
        *,
        config: RunnableConfig | None = None,
        model: BaseChatModel | None = None,
        history: Sequence[Turn] = (),
    ) -> CallPlan[StructuredResult[AnswerEvaluation]]:
        """Score ``answer`` on each of ``aspects``; a reply missing any aspect is re-asked (a call plan).

        The scores come back in the order of ``aspects``, whatever order the model used. With
        ``history`` the judge sees the conversation and grades the reply to its last turn.
        """
        prompt = render_prompt(
            "answer_scoring",
            self.prompts_dir,
            query=query,
            conversation=conversation_block(history),
            answer=answer or "(empty answer)",
            aspects=self.catalog.describe(aspects),
        )

        def complete_and_ordered(evaluation: AnswerEvaluation) -> AnswerEvaluation:
            by_name: dict[str, AspectScore] = {}
            for score in evaluation.scores:
                name = self.catalog.resolve(score.aspect) or score.aspect
                by_name.setdefault(name.casefold(), score.model_copy(update={"aspect": name}))
            missing = [a for a in aspects if a.casefold() not in by_name]
            if missing:
                raise ValueError(f"missing scores for aspect(s): {', '.join(missing)}")
            return AnswerEvaluation(scores=[by_name[a.casefold()] for a in aspects])

        return (
            yield from self.plan_ask(
                AnswerEvaluation,
                "judge_system",
                prompt,
                step="score",
                config=config,
                validate=complete_and_ordered,
                model=model,
                wire_schema=scoring_schema(aspects),
            )
        )

    def plan_verdict(
        self,
        query: str,
        answer: str,
        aspects: Sequence[str],
        *,
        config: RunnableConfig | None = None,
        history: Sequence[Turn] = (),
    ) -> CallPlan[JuryVerdict]:
        """Score ``answer`` with every juror and aggregate per aspect by median (a call plan).

        With one juror this is exactly :meth:`plan_score`. Juror ``i`` sees the aspects rotated
        by ``i`` places (position bias averages out; a same-model juror gets a different prompt).
        A failed juror is left out and its error recorded; if every juror fails, the last
        error is raised.
        """
        ordered = list(aspects)
        if len(self.jurors) == 1:
            single = yield from self.plan_score(query, answer, ordered, config=config, history=history)
            evaluation = single.value
            return JuryVerdict(
                evaluation, evaluation.reward, [evaluation], [None], None, {"judge": single.messages}
            )
        plans = []
        for index, juror in enumerate(self.jurors):
            shift = index % len(ordered) if ordered else 0
            metadata = {**((config or {}).get("metadata") or {}), "drpo_juror": index}
            plans.append(
                self.plan_score(
                    query,
                    answer,
                    ordered[shift:] + ordered[:shift],
                    config={**(config or {}), "metadata": metadata},
                    model=juror,
                    history=history,
                )
            )
        # The jurors are independent: they run concurrently under ainvoke.
        outcomes = yield ParallelPlans(plans)
        return combine_jurors(self.model, self.jurors, outcomes, ordered)

    def plan_pairwise(
        self,
        query: str,
        answer_a: str,
        answer_b: str,
        aspects: Sequence[str],
        *,
        config: RunnableConfig | None = None,
        history: Sequence[Turn] = (),
    ) -> CallPlan[StructuredResult[PairwiseVerdict]]:
        """Which of two answers to ``query`` is better on ``aspects``, or a tie (a call plan; one
        order only: the caller swaps the positions to detect position bias); with ``history``, as
        replies to the conversation's last turn."""
        prompt = render_prompt(
            "pairwise_judgement",
            self.prompts_dir,
            conversation=conversation_block(history),
            query=query,
            answer_a=answer_a or "(empty answer)",
            answer_b=answer_b or "(empty answer)",
            aspects=self.catalog.describe(aspects),
        )
        return (
            yield from self.plan_ask(PairwiseVerdict, "judge_system", prompt, step="pairwise", config=config)
        )

    def select_aspects(self, query: str, *, config: RunnableConfig | None = None) -> AspectSelection:
        """Blocking :meth:`plan_select_aspects`, returning the selection."""
        return run_plan(self.plan_select_aspects(query, config=config)).value

    async def aselect_aspects(self, query: str, *, config: RunnableConfig | None = None) -> AspectSelection:
        """Async :meth:`plan_select_aspects`, returning the selection."""
        return (await arun_plan(self.plan_select_aspects(query, config=config))).value

    def score(
        self, query: str, answer: str, aspects: Sequence[str], *, config: RunnableConfig | None = None
    ) -> AnswerEvaluation:
        """Blocking :meth:`plan_score`, returning the evaluation."""
        return run_plan(self.plan_score(query, answer, aspects, config=config)).value

    async def ascore(
        self, query: str, answer: str, aspects: Sequence[str], *, config: RunnableConfig | None = None
    ) -> AnswerEvaluation:
        """Async :meth:`plan_score`, returning the evaluation."""
        return (await arun_plan(self.plan_score(query, answer, aspects, config=config))).value
