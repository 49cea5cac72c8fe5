"""The realignment round as a LangGraph graph: new queries → warm-started search → gate against the
deployed artifact → promote or keep.

::

    gather ─► optimize ─► evaluate ─► promote ─► END     (the gate passed: current.json switches)
       │                      └─────► keep ────► END     (it failed: the deployed version stays)
       └─► END                                           (too few new queries: no round)

The nodes are sync: LangGraph runs them in worker threads, so the file and database work of a
search never blocks a server's event loop (``langgraph dev`` refuses such calls). Each node is
idempotent, so a round killed at any instant completes when run again: ``optimize``
resumes the round's search from its own checkpoints, ``evaluate`` replays its finished calls from
its journal, and ``promote`` writes the version, switches the pointer and records the round, each
step safe to repeat (:class:`~drpo_agents.realign.deployment.Deployment`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from drpo_agents.api import optimize, resume
from drpo_agents.artifact import ArtifactSource, load_artifact
from drpo_agents.config import ConfigLike, DRPOConfig, as_config
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.evaluation import GateThresholds, aevaluate
from drpo_agents.infra.calls import run_sync
from drpo_agents.infra.run_files import (
    CONFIG_FILE,
    EVALUATION_FILE,
    EVALUATION_JOURNAL_FILE,
    EVALUATION_MARKDOWN_FILE,
    MEMORY_DIR,
)
from drpo_agents.json_types import JsonObject
from drpo_agents.realign.deployment import Decision, Deployment, RoundRecord
from drpo_agents.realign.inputs import checked_input, new_queries, query_key, split_held_out
from drpo_agents.run_spec import ChatModel, ResponderModel
from drpo_agents.search.records import Query

PROMOTION_GATE = GateThresholds(max_regression=0.0)
"""The default promotion rule: the candidate's gain over the deployed prompt, on held-out queries,
must be positive beyond the noise (the lower end of its paired bootstrap interval at least 0)."""


class RealignInput(TypedDict):
    """What a round is started with: the deployment folder and where new queries appear."""

    deploy_dir: str
    queries: str  # a query file, or a folder of them that grows


class _RoundFields(TypedDict, total=False):
    round: int
    deployed: str  # the version deployed when the round started
    query_files: list[str]
    train: list[Query]
    held_out: list[Query]
    run_dir: str
    decision: Decision
    reason: str
    record: JsonObject  # a RoundRecord dump: the round as history.jsonl keeps it (also a skipped one)


class RealignState(RealignInput, _RoundFields):
    """A round in progress (checkpointed after every node)."""


class RealignUpdate(_RoundFields, total=False):
    """What a node returns: some of the round's fields."""


@dataclass(frozen=True)
class RealignSettings:
    """How rounds are run: the models, the search config, the promotion gate and the query split.

    Attributes:
        responder, judge, rewriter: as for :func:`~drpo_agents.api.aoptimize`.
        evaluation_judge: the judge of the gate (default: ``judge``); a stronger or different model
            than the search's keeps a judge the search learned to please from deciding promotion.
        config: the search's settings (the warm start sets its initial prompt).
        gate: the promotion rule (default :data:`PROMOTION_GATE`).
        held_out_fraction: the share of new queries held out for the gate.
        min_new_queries: fewer new queries than this and no round runs.
        initial: deployed as ``v0000`` when the folder has nothing deployed yet (default: the plain
            initial prompt).
        shared_memory: every round recalls the critiques of the rounds before it (the folder's
            ``memory/``); off by default, each round keeps its own (``rounds/rNNNN/memory``): over 16
            seeds the shared memory did not raise the held-out score (docs/REALIGN.md).
        embeddings: for ICL retrieval, as for :func:`~drpo_agents.api.aoptimize`.
    """

    responder: ResponderModel
    judge: ChatModel
    rewriter: ChatModel | None = None
    evaluation_judge: ChatModel | None = None
    config: DRPOConfig = field(default_factory=DRPOConfig)
    gate: GateThresholds = PROMOTION_GATE
    held_out_fraction: float = 0.3
    min_new_queries: int = 4
    initial: ArtifactSource | None = None
    embeddings: EmbeddingsLike | None = None
    shared_memory: bool = False


def create_realign_graph(
    responder: ResponderModel,
    judge: ChatModel,
    rewriter: ChatModel | None = None,
    *,
    config: ConfigLike = None,
    gate: GateThresholds | None = None,
    evaluation_judge: ChatModel | None = None,
    held_out_fraction: float = 0.3,
    min_new_queries: int = 4,
    initial: ArtifactSource | None = None,
    embeddings: EmbeddingsLike | None = None,
    shared_memory: bool = False,
) -> StateGraph[RealignState, None, RealignInput, RealignState]:
    """Build the realignment graph (uncompiled: the caller chooses the checkpointer).

    Invoke the compiled graph with ``{"deploy_dir": ..., "queries": ...}``; its output's
    ``record`` is the round's :class:`~drpo_agents.realign.deployment.RoundRecord`. See
    :class:`RealignSettings` for the arguments and :func:`~drpo_agents.realign.arealign` for the
    runner that keeps the checkpoints in the deployment folder.
    """
    settings = RealignSettings(
        responder=responder,
        judge=judge,
        rewriter=rewriter,
        evaluation_judge=evaluation_judge,
        config=as_config(config),
        gate=gate or PROMOTION_GATE,
        held_out_fraction=held_out_fraction,
        min_new_queries=min_new_queries,
        initial=initial,
        embeddings=embeddings,
        shared_memory=shared_memory,
    )
    steps = _Steps(settings)
    graph = StateGraph(RealignState, input_schema=RealignInput, output_schema=RealignState)
    graph.add_node("gather", steps.gather)
    graph.add_node("optimize", steps.optimize)
    graph.add_node("evaluate", steps.evaluate)
    graph.add_node("promote", steps.promote)
    graph.add_node("keep", steps.keep)
    graph.add_edge(START, "gather")
    graph.add_conditional_edges("gather", _after_gather, ["optimize", END])
    graph.add_edge("optimize", "evaluate")
    graph.add_conditional_edges("evaluate", _after_evaluate, ["promote", "keep"])
    graph.add_edge("promote", END)
    graph.add_edge("keep", END)
    return graph


def _after_gather(state: RealignState) -> Literal["optimize", "__end__"]:
    return "__end__" if state.get("decision") == "skipped" else "optimize"


def _after_evaluate(state: RealignState) -> Literal["promote", "keep"]:
    return "promote" if state["decision"] == "promoted" else "keep"


class _Steps:
    """The graph's nodes over one :class:`RealignSettings`."""

    def __init__(self, settings: RealignSettings) -> None:
        self.settings = settings

    def gather(self, state: RealignInput) -> RealignUpdate:
        """Read the new queries and split them; deploy the initial artifact first when nothing is
        deployed yet (not for a round that does not run)."""
        deploy_dir, source = checked_input(state)
        deployment = Deployment(deploy_dir)
        number = deployment.next_round()
        fresh, files = new_queries(source, deployment.used_query_keys())
        if len(fresh) < self.settings.min_new_queries:
            deployed = deployment.current_version() or "none"
            reason = f"{len(fresh)} new queries in {state['queries']} (a round needs {self.settings.min_new_queries})"
            record = RoundRecord(
                round=number,
                decision="skipped",
                reason=reason,
                deployed_before=deployed,
                deployed_after=deployed,
            )
            return {
                "round": number,
                "deployed": deployed,
                "query_files": files,
                "decision": "skipped",
                "reason": reason,
                "train": [],
                "held_out": [],
                "record": record.model_dump(mode="json"),
            }
        initial = load_artifact(self.settings.initial) if self.settings.initial is not None else None
        deployed = deployment.deploy_first(initial, fresh)
        train, held_out = split_held_out(fresh, self.settings.held_out_fraction, self.settings.config.seed)
        return {
            "round": number,
            "deployed": deployed,
            "query_files": files,
            "train": train,
            "held_out": held_out,
            "decision": "kept",
            "reason": "",
        }

    def optimize(self, state: RealignState, config: RunnableConfig) -> RealignUpdate:
        """The round's search, warm-started from the deployed version (resumed from its own
        checkpoints when the round ran before)."""
        s, deployment = self.settings, Deployment(state["deploy_dir"])
        run_dir = deployment.round_dir(state["round"])
        callbacks = config.get("callbacks")
        if (run_dir / CONFIG_FILE).is_file():
            resume(run_dir, responder=s.responder, judge=s.judge, rewriter=s.rewriter, callbacks=callbacks)
        else:
            optimize(
                state["train"],
                responder=s.responder,
                judge=s.judge,
                rewriter=s.rewriter,
                config=s.config,
                embeddings=s.embeddings,
                run_dir=run_dir,
                run_id=run_dir.name,
                memory=str(deployment.root / MEMORY_DIR)
                if s.shared_memory
                else None,  # None: the round's own
                callbacks=callbacks,
                start_from=deployment.version_path(state["deployed"]),
            )
        return {"run_dir": str(run_dir)}

    def evaluate(self, state: RealignState, config: RunnableConfig) -> RealignUpdate:
        """Evaluate the candidate against the deployed version on the held-out queries; the gate decides."""
        s, deployment = self.settings, Deployment(state["deploy_dir"])
        run_dir = Path(state["run_dir"])
        report = run_sync(
            aevaluate(
                state["held_out"],
                responder=s.responder,
                judge=s.evaluation_judge or s.judge,
                artifact=run_dir,
                baseline=deployment.version_path(state["deployed"]),
                gate=s.gate,
                embeddings=s.embeddings,
                seed=s.config.seed,
                journal=run_dir / EVALUATION_JOURNAL_FILE,  # a rerun after a kill replays finished calls
                callbacks=config.get("callbacks"),
            )
        )
        report.save(run_dir / EVALUATION_FILE)
        (run_dir / EVALUATION_MARKDOWN_FILE).write_text(report.to_markdown(), encoding="utf-8")
        verdict = report.gate
        assert verdict is not None  # a gate was given
        gain = verdict.gain
        record = RoundRecord(
            round=state["round"],
            decision="promoted" if verdict.passed else "kept",
            reason=verdict.summary(),
            deployed_before=state["deployed"],
            deployed_after=state["deployed"],
            query_files=state["query_files"],
            train_queries=[q["id"] for q in state["train"]],
            held_out_queries=[q["id"] for q in state["held_out"]],
            query_keys=[query_key(q["query"]) for q in state["train"] + state["held_out"]],
            candidate_mean=report.setup("drpo").overall.mean,
            deployed_mean=report.setup("deployed").overall.mean,
            gain=[gain.mean, gain.low, gain.high] if gain is not None else None,
            run_dir=str(run_dir.relative_to(deployment.root)),
        )
        return {
            "decision": record.decision,
            "reason": record.reason,
            "record": record.model_dump(mode="json"),
        }

    def promote(self, state: RealignState) -> RealignUpdate:
        """Keep the candidate as this round's version, switch ``current.json`` to it, record the round."""
        deployment = Deployment(state["deploy_dir"])
        version = f"v{state['round']:04d}"
        deployment.promote(load_artifact(state["run_dir"]), version)
        record = RoundRecord.model_validate({**state["record"], "deployed_after": version})
        deployment.record(record)
        return {"record": record.model_dump(mode="json")}

    def keep(self, state: RealignState) -> RealignUpdate:
        """Record the round; the deployed version stays."""
        Deployment(state["deploy_dir"]).record(RoundRecord.model_validate(state["record"]))
        return {}
