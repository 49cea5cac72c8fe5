"""The evaluation harness: validated setups and agents, and the call plans that answer, score and compare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig

from drpo_agents.agents import Judge, Responder
from drpo_agents.artifact import TokenUsage
from drpo_agents.datasets import Query, is_multi_turn, normalize_queries
from drpo_agents.errors import ConfigError, error_text, recoverable_errors
from drpo_agents.evaluation.answering import Answerer
from drpo_agents.evaluation.gate import DEPLOYED, GateThresholds, check_gate
from drpo_agents.evaluation.held_out import check_held_out
from drpo_agents.evaluation.options import EvaluationOptions
from drpo_agents.evaluation.records import (
    AnswerRecord,
    BootstrapSettings,
    EvaluationReport,
    PairwiseRecord,
    QueryRecord,
    Winner,
)
from drpo_agents.evaluation.setups import (
    EvaluationSetup,
    FixedICLRetriever,
    artifact_setup,
    base_setup,
    urial_setup,
)
from drpo_agents.evaluation.statistics import pairwise_outcome, summarize, verdicts_agree
from drpo_agents.infra.call_identity import task_scope
from drpo_agents.infra.calls import CallPlan, call_config
from drpo_agents.infra.journal import ResponseJournal, journaled_copies
from drpo_agents.models.roles import prepare_role_models
from drpo_agents.retrieval import recorded_retriever
from drpo_agents.structured import StructuredMethods
from drpo_agents.usage import UsageByRole, merge_usage, usage_of


def choose_setups(options: EvaluationOptions) -> tuple[list[EvaluationSetup], str | None]:
    """The setups to evaluate, in order (base, URIAL-style, the artifact's, named prompts, the
    rest), and the reference setup (``drpo`` when an artifact is given and none is named).

    Raises:
        ConfigError: no setups, repeated names, or a reference that is not one of them.
    """
    chosen: list[EvaluationSetup] = []
    if options.include_base:
        chosen.append(base_setup())
    if options.include_urial:
        chosen.append(urial_setup())
    if options.artifact is not None:
        chosen.append(artifact_setup(options.artifact))
    if options.baseline is not None:
        chosen.append(artifact_setup(options.baseline, DEPLOYED))
    chosen += [EvaluationSetup(name=n, system_prompt=p) for n, p in (options.prompts or {}).items()]
    chosen += list(options.setups or [])
    names = [s.name for s in chosen]
    if not chosen:
        raise ConfigError("nothing to evaluate: no setups were given")
    if len(set(names)) != len(names):
        raise ConfigError(f"setup names must be unique, got {names}")
    reference = options.reference
    if reference is None and options.artifact is not None:
        reference = "drpo"
    if reference is not None and reference not in names:
        raise ConfigError(f"reference setup {reference!r} is not one of {names}")
    return chosen, reference


class Harness:
    """Validated inputs plus the call plans; the sync and async drivers only decide how to run them."""

    def __init__(
        self,
        queries: list[Query],
        setups: list[EvaluationSetup],
        reference: str | None,
        responders: dict[str, Responder],
        judge: Judge,
        options: EvaluationOptions,
    ) -> None:
        self.queries = queries
        self.setups = setups
        self.reference = reference
        self.judge = judge
        self.aspects = list(options.aspects)
        self.answerer = Answerer(responders, judge, options.aspects)
        self.options = options
        self.config: RunnableConfig | None = (
            {"callbacks": options.callbacks} if options.callbacks is not None else None
        )
        self.usage: UsageByRole = {}
        self.journal: ResponseJournal | None = None
        self.models: dict[str, str] = {}
        self.notes: list[str] = []

    @classmethod
    def build(cls, queries: Sequence[Any], options: EvaluationOptions) -> Harness:
        """Validate everything (before any model call) and build the harness.

        Raises:
            ConfigError: invalid queries or setups, or queries the artifact was optimised on.
        """
        items = normalize_queries(queries, user_turns=True)
        if not options.allow_overlap:
            for artifact in (options.artifact, options.baseline):
                if artifact is not None:
                    check_held_out(items, artifact)
        setups, reference = choose_setups(options)
        if not options.aspects:
            raise ConfigError("at least one aspect is needed")
        models = prepare_role_models(responder=options.responder, judge=options.judge, rewrites=False)
        assert models.responder is not None  # prepared with a responder
        responder_model, judge_model = models.responder, models.judge
        journal = ResponseJournal(options.journal) if options.journal is not None else None
        if journal is not None:
            responder_model, judge_model = journaled_copies([responder_model, judge_model], journal)
        responders = {
            s.name: Responder(
                responder_model,
                retriever=(
                    recorded_retriever(s.icl_examples, s.retrieval, embeddings=options.embeddings)
                    if s.retrieve
                    else FixedICLRetriever(s.icl_examples)
                ),
                k=s.icl_k,
                mode=options.responder_mode,
                prompts_dir=options.prompts_dir,
            )
            for s in setups
        }
        judge = Judge(
            judge_model,
            method=options.structured_output_method,
            max_retries=options.max_parse_retries,
            prompts_dir=options.prompts_dir,
            methods=StructuredMethods(),
        )
        harness = cls(items, setups, reference, responders, judge, options)
        harness.journal = journal
        harness.models, harness.notes = models.identities(), models.notes()
        return harness

    def close(self) -> None:
        """Close the response journal, if any."""
        if self.journal is not None:
            self.journal.close()

    @staticmethod
    def answer_scope(setup: EvaluationSetup, query: Query) -> str:
        """The journal scope of one answer task: the whole setup (prompt, examples) and query."""
        return task_scope("evaluation_answer", {"setup": setup.model_dump(mode="json"), "query": query})

    @staticmethod
    def compare_scope(opponent: str, query: Query, mine: AnswerRecord, theirs: AnswerRecord) -> str:
        """The journal scope of one comparison: the opponent, the query (with a conversation's
        earlier turns) and both answers."""
        payload: dict[str, object] = {"opponent": opponent, "query": query["query"]}
        if "history" in query:
            payload["history"] = query["history"]
        return task_scope("evaluation_compare", {**payload, "answers": [mine.answer, theirs.answer]})

    def answer_tasks(self) -> list[tuple[EvaluationSetup, Query]]:
        """Every (setup, query) to answer and score."""
        return [(s, q) for s in self.setups for q in self.queries]

    def plan_answer(self, setup: EvaluationSetup, query: Query) -> CallPlan[AnswerRecord]:
        """Answer ``query`` under ``setup`` and score it (see :class:`Answerer`)."""
        cfg = call_config(
            self.config, "evaluation", "answer", drpo_setup=setup.name, drpo_query_id=query["id"]
        )
        return (yield from self.answerer.plan_answer(setup, query, cfg))

    def comparisons(
        self, answers: Mapping[tuple[str, str], AnswerRecord]
    ) -> list[tuple[str, Query, AnswerRecord, AnswerRecord]]:
        """(opponent, query, reference answer, opponent answer) for every pairwise comparison."""
        if self.reference is None:
            return []
        return [
            (s.name, q, answers[(self.reference, q["id"])], answers[(s.name, q["id"])])
            for q in self.queries
            for s in self.setups
            if s.name != self.reference
        ]

    def plan_compare(
        self, opponent: str, query: Query, mine: AnswerRecord, theirs: AnswerRecord
    ) -> CallPlan[PairwiseRecord]:
        """Judge the pair in both orders (reference as A, then as B) and combine the verdicts."""
        failed = next((a for a in (mine, theirs) if a.error is not None), None)
        if failed is not None:
            return PairwiseRecord(opponent=opponent, error=f"not compared: the {failed.setup} answer failed")
        verdicts: list[Winner] = []
        cfg = call_config(self.config, "evaluation", "compare", drpo_setup=opponent)
        for first, second in ((mine.answer, theirs.answer), (theirs.answer, mine.answer)):
            try:
                result = yield from self.judge.plan_pairwise(
                    query["query"],
                    first,
                    second,
                    self.answerer.aspects_for(query),
                    config=cfg,
                    history=query.get("history", []),
                )
            except recoverable_errors() as exc:
                return PairwiseRecord(opponent=opponent, error=error_text(exc))
            self.usage = merge_usage(self.usage, usage_of("judge", result.messages))
            verdicts.append(result.value.winner)
        return PairwiseRecord(
            opponent=opponent,
            reference_first=verdicts[0],
            reference_second=verdicts[1],
            outcome=pairwise_outcome(verdicts[0], verdicts[1]),
            consistent=verdicts_agree(verdicts[0], verdicts[1]),
        )

    def report(
        self,
        answers: Mapping[tuple[str, str], AnswerRecord],
        pairs: Mapping[tuple[str, str], PairwiseRecord],
    ) -> EvaluationReport:
        """Per-query records and their summary."""
        records = [
            QueryRecord(
                query_id=q["id"],
                query=q["query"],
                kind="multi-turn" if is_multi_turn(q) else "single-turn",
                answers=[answers[(s.name, q["id"])] for s in self.setups],
                pairwise=[pairs[(s.name, q["id"])] for s in self.setups if (s.name, q["id"]) in pairs],
            )
            for q in self.queries
        ]
        bootstrap = BootstrapSettings(
            resamples=self.options.resamples,
            confidence=self.options.confidence,
            seed=self.options.seed,
            unit="query",
        )
        # Conversations are also judged on Consistency: a column of its own (over them only).
        multi_turn = any(is_multi_turn(q) for q in self.queries)
        aspects = self.answerer.conversation_aspects if multi_turn else self.aspects
        setups, rates = summarize(
            records,
            self.setups,
            aspects=aspects,
            reference=self.reference,
            resamples=bootstrap["resamples"],
            confidence=bootstrap["confidence"],
            seed=bootstrap["seed"],
        )
        report = EvaluationReport(
            aspects=aspects,
            reference=self.reference,
            setups=setups,
            win_rates=rates,
            records=records,
            bootstrap=bootstrap,
            models=self.models,
            usage={
                role: TokenUsage.model_validate(u)
                for role, u in merge_usage(self.answerer.usage, self.usage).items()
            },
            notes=self.notes,
        )
        if self.options.gate is not None or self.options.baseline is not None:
            report.gate = check_gate(report, self.options.gate or GateThresholds())
        return report
