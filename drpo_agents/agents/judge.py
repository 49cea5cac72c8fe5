"""The dynamic-reward judge: picks the aspects that matter for a query, then scores an answer on them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from drpo_agents.aspects import AspectCatalog
from drpo_agents.calls import CallPlan, arun_plan, call_config, run_plan
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.prompts import render_prompt
from drpo_agents.schemas import AnswerEvaluation, AspectScore, AspectSelection
from drpo_agents.structured import StructuredResult, plan_structured


class Judge:
    """Selects 2-5 aspects per query and scores answers 1-5 on them; the reward is the mean.

    Args:
        model: the judge chat model (a strong one: the search is only as good as its reward).
        selection_model: model for aspect selection; defaults to ``model`` (pass a cached copy
            so a query is never analysed twice, even across runs).
        catalog: aspects to choose from; the judge may still name a new one when none fits.
        method: how structured output is obtained (see :func:`ainvoke_structured`).
        max_retries: re-asks after an invalid or incomplete reply.
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
    ) -> None:
        self.model = model
        self.selection_model = selection_model or model
        self.catalog = catalog or AspectCatalog.default()
        self.method: StructuredOutputMethod = method
        self.max_retries = max_retries
        self.prompts_dir = prompts_dir

    def _system(self) -> SystemMessage:
        return SystemMessage(render_prompt("judge_system", self.prompts_dir))

    def plan_select_aspects(
        self, query: str, *, config: RunnableConfig | None = None
    ) -> CallPlan[StructuredResult[AspectSelection]]:
        """Choose the aspects a grader should score answers to ``query`` on (a call plan)."""
        prompt = render_prompt(
            "aspect_selection", self.prompts_dir, query=query, aspect_catalog=self.catalog.describe()
        )

        def canonical_names(selection: AspectSelection) -> AspectSelection:
            names = [self.catalog.resolve(n) or n for n in selection.selected_aspects]
            return selection.model_copy(update={"selected_aspects": list(dict.fromkeys(names))})

        return (
            yield from plan_structured(
                self.selection_model,
                AspectSelection,
                [self._system(), HumanMessage(prompt)],
                method=self.method,
                max_retries=self.max_retries,
                validate=canonical_names,
                config=call_config(config, self.role, "select_aspects"),
                prompts_dir=self.prompts_dir,
            )
        )

    def plan_score(
        self,
        query: str,
        answer: str,
        aspects: Sequence[str],
        *,
        config: RunnableConfig | None = None,
    ) -> CallPlan[StructuredResult[AnswerEvaluation]]:
        """Score ``answer`` on each of ``aspects``; a reply missing any aspect is re-asked (a call plan)."""
        prompt = render_prompt(
            "answer_scoring",
            self.prompts_dir,
            query=query,
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
            yield from plan_structured(
                self.model,
                AnswerEvaluation,
                [self._system(), HumanMessage(prompt)],
                method=self.method,
                max_retries=self.max_retries,
                validate=complete_and_ordered,
                config=call_config(config, self.role, "score"),
                prompts_dir=self.prompts_dir,
            )
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
