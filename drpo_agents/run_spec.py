"""What a run is made of besides its ``DRPOConfig``: its models and its resources, one frozen record each.

The CLI builds these once and :mod:`drpo_agents.api` hands them down to the graph, so no layer
re-lists the fifteen parameters they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from typing_extensions import TypedDict

from drpo_agents.aspects import AspectCatalog
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.memory.stores import MemoryLocation
from drpo_agents.models.registry import rebuild_spec
from drpo_agents.schemas import ICLExample
from drpo_agents.search.records import ReviewAnswer, ReviewRequest

ResponderModel = str | BaseLanguageModel[Any]
"""The model to align: a model instance or a ``"provider:model"`` string."""
ChatModel = str | BaseChatModel
"""A judge, rewriter or juror: a chat model instance or a ``"provider:model"`` string."""
Checkpointer = BaseCheckpointSaver[Any] | str | None


class ProgressEvent(TypedDict):
    """One finished step of a run, as a progress callback is told of it."""

    node: str  # the graph node that finished a step
    calls: int  # model calls the step made
    level: int | None  # the search level it ranked (``select_beam``), else None
    depth: int | None  # the depth in force after that level (it grows when a level is carried)
    best_mean_reward: float | None  # the best candidate's mean reward after that level


ProgressCallback = Callable[[ProgressEvent], None]
Reviewer = Callable[[ReviewRequest], ReviewAnswer]


def recorded_spec(model: Any) -> str:
    """How ``config.json`` records a model so a resume can rebuild it: its spec string, the string
    that rebuilds a sandbox or local instance, or a marker for any other instance."""
    if isinstance(model, str):
        return model
    return rebuild_spec(model) or f"<{type(model).__name__} instance>"


@dataclass(frozen=True)
class RunModels:
    """The models of a run: the responder being aligned, the judge, the rewriter and any jurors."""

    responder: ResponderModel
    judge: ChatModel
    rewriter: ChatModel | None = None  # None: the judge rewrites too
    jury: Sequence[ChatModel] = ()

    def specs(self) -> dict[str, str | list[str]]:
        """The models as ``config.json`` records them (see :func:`recorded_spec`)."""
        return {
            "responder": recorded_spec(self.responder),
            "judge": recorded_spec(self.judge),
            "rewriter": recorded_spec(self.rewriter or self.judge),
            "jury": [recorded_spec(m) for m in self.jury],
        }


@dataclass(frozen=True)
class RunResources:
    """Everything else a run uses: where it keeps its state, what it is built with, who watches it.

    Attributes:
        run_dir: the run's folder (config, checkpoints, LLM cache, Chroma data, artifact), or None.
        run_id: the run's id (also the checkpoint thread id); generated when a run starts without one.
        memory: a critique-memory folder, ``http://host:port`` Chroma server or :class:`CritiqueMemory`.
        checkpointer: a checkpointer or a ``postgresql://`` URL instead of the run directory's SQLite.
        icl_examples, embeddings, aspects: see :func:`drpo_agents.search.create_drpo_graph`.
        callbacks: LangChain callbacks for every node and model call.
        on_progress: called as ``on_progress(node_name, update)`` after every graph step.
        reviewer: answers a review request (see :func:`drpo_agents.api.aoptimize`).
    """

    run_dir: Path | None = None
    run_id: str | None = None
    memory: MemoryLocation = None
    checkpointer: Checkpointer = None
    icl_examples: Sequence[ICLExample] | None = None
    embeddings: EmbeddingsLike | None = None
    aspects: AspectCatalog | None = None
    callbacks: Callbacks = None
    on_progress: ProgressCallback | None = None
    reviewer: Reviewer | None = None
