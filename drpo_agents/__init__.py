"""drpo-agents: tuning-free self-alignment of language models with DRPO, as a LangGraph graph.

DRPO (Dynamic Rewarding with Prompt Optimization, EMNLP 2024) searches over a model's system
prompt and in-context examples with three agents: a responder (the model being aligned), a
dynamic-reward judge and a prompt rewriter.

Typical use::

    from drpo_agents import optimize, with_alignment, DRPOConfig
    artifact = optimize(queries, responder="openai:gpt-4o-mini", judge="openai:gpt-4o",
                        config=DRPOConfig(depth=10), run_dir="runs/first")
    aligned = with_alignment(my_chat_model, artifact)

The package root holds the entry points a user needs; everything else lives in its module
(``drpo_agents.agents``, ``drpo_agents.memory``, ``drpo_agents.schemas``, ...). The names the root
used to export still import from here for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drpo_agents.aligned import with_alignment
    from drpo_agents.api import aoptimize, aresume, optimize, resume
    from drpo_agents.artifact import AlignmentArtifact
    from drpo_agents.config import DRPOConfig
    from drpo_agents.datasets import load_eval_queries, load_training_queries
    from drpo_agents.errors import DRPOError, ReviewRequired
    from drpo_agents.evaluation import aevaluate, evaluate
    from drpo_agents.report import write_report
    from drpo_agents.search import create_drpo_graph

__version__ = "0.1.0"

# The root's names and their modules, imported when first used: importing a submodule (the
# ``drpo`` command's entry point, a sandbox model) does not load LangGraph, Chroma and the rest.
_PUBLIC = {
    "with_alignment": "drpo_agents.aligned",
    "aoptimize": "drpo_agents.api",
    "aresume": "drpo_agents.api",
    "optimize": "drpo_agents.api",
    "resume": "drpo_agents.api",
    "AlignmentArtifact": "drpo_agents.artifact",
    "DRPOConfig": "drpo_agents.config",
    "load_eval_queries": "drpo_agents.datasets",
    "load_training_queries": "drpo_agents.datasets",
    "DRPOError": "drpo_agents.errors",
    "ReviewRequired": "drpo_agents.errors",
    "aevaluate": "drpo_agents.evaluation",
    "evaluate": "drpo_agents.evaluation",
    "write_report": "drpo_agents.report",
    "create_drpo_graph": "drpo_agents.search",
}

__all__ = [
    "AlignmentArtifact",
    "DRPOConfig",
    "DRPOError",
    "ReviewRequired",
    "aevaluate",
    "aoptimize",
    "aresume",
    "create_drpo_graph",
    "evaluate",
    "load_eval_queries",
    "load_training_queries",
    "optimize",
    "resume",
    "with_alignment",
    "write_report",
]

# Names the package root exported before 0.2, and the module each now lives in.
_MOVED = {
    "Judge": "drpo_agents.agents",
    "PromptRewriter": "drpo_agents.agents",
    "Responder": "drpo_agents.agents",
    "CandidateRecord": "drpo_agents.artifact",
    "EvaluationRecord": "drpo_agents.artifact",
    "ICLOptimizationRecord": "drpo_agents.artifact",
    "ICLRoundRecord": "drpo_agents.artifact",
    "LevelRecord": "drpo_agents.artifact",
    "DEFAULT_ASPECTS": "drpo_agents.aspects",
    "Aspect": "drpo_agents.aspects",
    "AspectCatalog": "drpo_agents.aspects",
    "load_icl_examples": "drpo_agents.icl_sets",
    "load_queries": "drpo_agents.datasets",
    "load_seed_icl_examples": "drpo_agents.icl_sets",
    "ArtifactError": "drpo_agents.errors",
    "ConfigError": "drpo_agents.errors",
    "StructuredOutputError": "drpo_agents.errors",
    "EVAL_ASPECTS": "drpo_agents.evaluation",
    "EvaluationReport": "drpo_agents.evaluation",
    "EvaluationSetup": "drpo_agents.evaluation",
    "ICLStageConfig": "drpo_agents.search.icl_stage",
    "aoptimize_icl_examples": "drpo_agents.search.icl_stage",
    "create_icl_stage_graph": "drpo_agents.search.icl_stage",
    "optimize_icl_examples": "drpo_agents.search.icl_stage",
    "ChromaCritiqueMemory": "drpo_agents.memory",
    "ChromaICLRetriever": "drpo_agents.memory",
    "Critique": "drpo_agents.memory",
    "CritiqueMemory": "drpo_agents.memory",
    "InMemoryCritiqueMemory": "drpo_agents.memory",
    "resolve_model": "drpo_agents.models",
    "sandbox_models": "drpo_agents.models",
    "load_official_trace": "drpo_agents.official",
    "HashingEmbeddings": "drpo_agents.embeddings",
    "InMemoryICLRetriever": "drpo_agents.retrieval",
    "AnswerEvaluation": "drpo_agents.schemas",
    "AnswerRewrite": "drpo_agents.schemas",
    "AspectScore": "drpo_agents.schemas",
    "AspectSelection": "drpo_agents.schemas",
    "ICLExample": "drpo_agents.schemas",
    "PairwiseVerdict": "drpo_agents.schemas",
    "PromptProposal": "drpo_agents.schemas",
    "PromptProposals": "drpo_agents.schemas",
    "DRPOInput": "drpo_agents.search",
    "DRPOState": "drpo_agents.search",
}


def __getattr__(name: str) -> Any:
    """A public name, from its module (kept here once loaded); a moved name with a warning that
    names the import to use instead."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"importing {name} from drpo_agents is deprecated; use: from {module} import {name}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, *_MOVED})
