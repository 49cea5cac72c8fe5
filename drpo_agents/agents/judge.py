"""The dynamic-reward judge: picks the aspects that matter for a query, then scores an answer on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from drpo_agents.aspects import ASPECT_NAME_MAX, AspectCatalog
from drpo_agents.calls import CallPlan, ParallelPlans, arun_plan, call_config, run_plan
from drpo_agents.config import StructuredOutputMethod
from drpo_agents.errors import recoverable_errors
from drpo_agents.prompts import render_prompt
from drpo_agents.rewards import aggregate_jury, jury_disagreement
from drpo_agents.schemas import AnswerEvaluation, AspectScore, AspectSelection
from drpo_agents.structured import StructuredMethods, StructuredResult, plan_structured, provider_schema


@dataclass
class JuryVerdict:
    """A jury's judgement of one answer.

    ``evaluation`` shows each aspect's median score (a half-point median rounded down, so the
    rewriter sees the weakness) with the rationale of a juror at the median; ``reward`` is the
    mean of the exact medians. ``jurors`` holds each juror's own evaluation (None if it failed).
    """

    evaluation: AnswerEvaluation
    reward: float
    jurors: list[AnswerEvaluation | None]
    errors: list[str | None]
    disagreement: float | None
    messages: dict[str, list[AIMessage]] = field(default_factory=dict)  # usage key -> raw replies


def scoring_schema(aspects: Sequence[str]) -> dict[str, Any]:
    """The schema sent for scoring ``aspects``: each score names one of them, and there are at
    least as many scores. A server that decodes under a grammar (llama.cpp, Ollama, vLLM) then
    cannot invent aspect names or leave one out; replies are still validated locally."""
    schema = provider_schema(AnswerEvaluation)
    scores = schema["properties"]["scores"]
    scores["items"]["properties"]["aspect"] = {"type": "string", "enum": list(dict.fromkeys(aspects))}
    scores["minItems"] = len(set(aspects)) or 1
    return schema


class Judge:
    """Selects 2-5 aspects per query and scores answers 1-5 on them; the reward is the mean.

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
        self.model = model
        self.methods = methods
        self.selection_model = selection_model or model
        self.catalog = catalog or AspectCatalog.default()
        self.method: StructuredOutputMethod = method
        self.max_retries = max_retries
        self.prompts_dir = prompts_dir
        self.jurors: list[BaseChatModel] = [model, *jury] if jury else [model] * max(1, jury_size)

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
            yield from plan_structured(
                self.selection_model,
                AspectSelection,
                [self._system(), HumanMessage(prompt)],
                method=self.method,
                max_retries=self.max_retries,
                validate=canonical_names,
                config=call_config(config, self.role, "select_aspects"),
                prompts_dir=self.prompts_dir,
                methods=self.methods,
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
    ) -> CallPlan[StructuredResult[AnswerEvaluation]]:
        """Score ``answer`` on each of ``aspects``; a reply missing any aspect is re-asked (a call plan).

        The scores come back in the order of ``aspects``, whatever order the model used.
        """
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
                model or self.model,
                AnswerEvaluation,
                [self._system(), HumanMessage(prompt)],
                method=self.method,
                max_retries=self.max_retries,
                validate=complete_and_ordered,
                config=call_config(config, self.role, "score"),
                prompts_dir=self.prompts_dir,
                methods=self.methods,
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
    ) -> CallPlan[JuryVerdict]:
        """Score ``answer`` with every juror and aggregate per aspect by median (a call plan).

        With one juror this is exactly :meth:`plan_score`. Juror ``i`` sees the aspects rotated
        by ``i`` places (position bias averages out; a same-model juror gets a different prompt).
        A failed juror is left out and its error recorded; if every juror fails, the last
        error is raised.
        """
        ordered = list(aspects)
        if len(self.jurors) == 1:
            single = yield from self.plan_score(query, answer, ordered, config=config)
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
                )
            )
        # The jurors are independent: they run concurrently under ainvoke.
        outcomes = yield ParallelPlans(plans)
        jurors: list[AnswerEvaluation | None] = []
        errors: list[str | None] = []
        messages: dict[str, list[AIMessage]] = {}
        last_error: BaseException | None = None
        for index, (juror, outcome) in enumerate(zip(self.jurors, outcomes, strict=True)):
            usage_key = "judge" if index == 0 or juror is self.model else "jury"
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, recoverable_errors()):
                    raise outcome  # our own errors and graph interrupts are not a juror's failure
                messages.setdefault(usage_key, []).extend(getattr(outcome, "messages", []))
                jurors.append(None)
                errors.append(f"{type(outcome).__name__}: {outcome}")
                last_error = outcome
                continue
            messages.setdefault(usage_key, []).extend(outcome.messages)
            by_name = {s.aspect.casefold(): s for s in outcome.value.scores}
            jurors.append(AnswerEvaluation(scores=[by_name[a.casefold()] for a in ordered]))
            errors.append(None)
        done = [j for j in jurors if j is not None]
        if not done:
            assert last_error is not None
            last_error.messages = [m for ms in messages.values() for m in ms]  # type: ignore[attr-defined]
            raise last_error
        if len(done) == 1:
            evaluation = done[0]
            return JuryVerdict(evaluation, evaluation.reward, jurors, errors, None, messages)
        verdicts = [{s.aspect: float(s.score) for s in j.scores} for j in done]
        medians = aggregate_jury(verdicts)
        scores = []
        for aspect, median in medians.items():
            # The rationale of the juror closest to the median explains the aggregated score.
            closest = min(done, key=lambda j: abs((j.score_of(aspect) or 0) - median))
            source = next(s for s in closest.scores if s.aspect == aspect)
            scores.append(source.model_copy(update={"score": int(median)}))
        reward = sum(medians.values()) / len(medians)
        return JuryVerdict(
            AnswerEvaluation(scores=scores), reward, jurors, errors, jury_disagreement(verdicts), messages
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
