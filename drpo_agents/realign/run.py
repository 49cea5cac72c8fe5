"""``arealign`` / ``realign``: run one realignment round in a deployment folder, resuming a round a
kill interrupted, one round at a time per folder."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from langchain_core.callbacks import Callbacks
from langchain_core.runnables import RunnableConfig

from drpo_agents.artifact import ArtifactSource
from drpo_agents.config import ConfigLike
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.errors import DRPOError
from drpo_agents.evaluation import GateThresholds
from drpo_agents.infra.calls import blocking_twin
from drpo_agents.infra.checkpoints import open_checkpointer
from drpo_agents.infra.run_files import private_folder
from drpo_agents.realign.deployment import Deployment, RoundRecord
from drpo_agents.realign.graph import RealignInput, create_realign_graph
from drpo_agents.realign.inputs import query_files
from drpo_agents.run_spec import ChatModel, ResponderModel

LOCK_FILE = ".realign.lock"


async def arealign(
    deploy_dir: str | Path,
    queries: str | Path,
    *,
    responder: ResponderModel,
    judge: ChatModel,
    rewriter: ChatModel | None = None,
    evaluation_judge: ChatModel | None = None,
    config: ConfigLike = None,
    gate: GateThresholds | None = None,
    held_out_fraction: float = 0.3,
    min_new_queries: int = 4,
    initial: ArtifactSource | None = None,
    embeddings: EmbeddingsLike | None = None,
    shared_memory: bool = False,
    callbacks: Callbacks = None,
) -> RoundRecord:
    """Run one realignment round in ``deploy_dir`` on the new queries in ``queries``.

    The round optimizes on most of the new queries, warm-started from the deployed artifact,
    evaluates the candidate against the deployed artifact on
    the rest, and promotes it (``current.json`` switches atomically) only if the gate passes;
    ``history.jsonl`` records the round either way. With too few new queries nothing runs (the
    record says ``skipped`` and is not kept). A round that was killed is resumed, with the inputs
    it started with, when this is called again.

    Args:
        deploy_dir: the deployment folder (made if missing; see
            :mod:`drpo_agents.realign.deployment`).
        queries: a query file, or a folder of query files that grows (each query is used once).
        responder, judge, rewriter, evaluation_judge, config, gate, held_out_fraction,
            min_new_queries, initial, embeddings, shared_memory: see
            :class:`~drpo_agents.realign.graph.RealignSettings`.
        callbacks: LangChain callbacks for the round (its search and evaluation included).

    Raises:
        DRPOError: another round is running in ``deploy_dir``.
        ConfigError: bad settings or queries (before any model call).
    """
    deployment = Deployment(deploy_dir)
    query_files(queries)  # a missing source fails before the folder is made
    private_folder(deployment.root)
    graph = create_realign_graph(
        responder,
        judge,
        rewriter,
        config=config,
        gate=gate,
        evaluation_judge=evaluation_judge,
        held_out_fraction=held_out_fraction,
        min_new_queries=min_new_queries,
        initial=initial,
        embeddings=embeddings,
        shared_memory=shared_memory,
    )
    with _one_round_at_a_time(deployment.root):
        async with open_checkpointer(None, deployment.root) as saver:
            assert saver is not None  # a folder always gets its SQLite checkpoints
            app = graph.compile(checkpointer=saver, name="drpo_realign")
            thread = f"round-{deployment.next_round()}"
            run_config = cast(
                RunnableConfig,
                {
                    "configurable": {"thread_id": thread},
                    "callbacks": callbacks,
                    "run_name": "drpo_realign",
                    "metadata": {"drpo_deployment": str(deployment.root)},
                },
            )
            snapshot = await app.aget_state(run_config)
            # A round resumes with its own inputs once they were read; one that failed reading
            # them (a wrong path, a bad file) starts again from the inputs given now.
            started = bool(snapshot.next) and "round" in snapshot.values
            if snapshot.next and not started:
                await saver.adelete_thread(thread)
            inputs: RealignInput | None = (
                None if started else {"deploy_dir": str(deployment.root), "queries": str(queries)}
            )
            final: dict[str, Any] = await app.ainvoke(inputs, run_config)
    return RoundRecord.model_validate(final["record"])


@contextmanager
def _one_round_at_a_time(root: Path) -> Iterator[None]:
    """Hold the folder's lock for the round (a second cron job started meanwhile fails at once)."""
    with (root / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DRPOError(f"another realign round is running in {root}; try again when it ends") from exc
        yield  # the lock goes with the file handle, also when the process is killed


realign = blocking_twin(arealign, "realign", "Blocking :func:`arealign`, with its parameters.")
