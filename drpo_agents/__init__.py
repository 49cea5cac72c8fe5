"""drpo-agents: tuning-free self-alignment of language models with DRPO, as a LangGraph graph.

DRPO (Dynamic Rewarding with Prompt Optimization, EMNLP 2024) searches over a model's system
prompt and in-context examples with three agents: a responder (the model being aligned), a
dynamic-reward judge and a prompt rewriter.

Typical use::

    from drpo_agents import optimize, with_alignment, DRPOConfig
    artifact = optimize(queries, responder="openai:gpt-4o-mini", judge="openai:gpt-4o",
                        config=DRPOConfig(depth=10), run_dir="runs/first")
    aligned = with_alignment(my_chat_model, artifact)
"""

from drpo_agents.agents import Judge, PromptRewriter, Responder
from drpo_agents.api import aoptimize, optimize
from drpo_agents.artifact import AlignmentArtifact, CandidateRecord, EvaluationRecord, LevelRecord
from drpo_agents.aspects import DEFAULT_ASPECTS, Aspect, AspectCatalog
from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import (
    load_eval_queries,
    load_icl_examples,
    load_queries,
    load_seed_icl_examples,
    load_training_queries,
)
from drpo_agents.errors import ArtifactError, ConfigError, DRPOError, StructuredOutputError
from drpo_agents.models import resolve_model, sandbox_models
from drpo_agents.retrieval import HashingEmbeddings, InMemoryICLRetriever
from drpo_agents.runnable import with_alignment
from drpo_agents.schemas import (
    AnswerEvaluation,
    AspectScore,
    AspectSelection,
    ICLExample,
    PromptProposal,
    PromptProposals,
)
from drpo_agents.search import DRPOInput, DRPOState, create_drpo_graph

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ASPECTS",
    "AlignmentArtifact",
    "AnswerEvaluation",
    "ArtifactError",
    "Aspect",
    "AspectCatalog",
    "AspectScore",
    "AspectSelection",
    "CandidateRecord",
    "ConfigError",
    "DRPOConfig",
    "DRPOError",
    "DRPOInput",
    "DRPOState",
    "EvaluationRecord",
    "HashingEmbeddings",
    "ICLExample",
    "InMemoryICLRetriever",
    "Judge",
    "LevelRecord",
    "PromptProposal",
    "PromptProposals",
    "PromptRewriter",
    "Responder",
    "StructuredOutputError",
    "aoptimize",
    "create_drpo_graph",
    "load_eval_queries",
    "load_icl_examples",
    "load_queries",
    "load_seed_icl_examples",
    "load_training_queries",
    "optimize",
    "resolve_model",
    "sandbox_models",
    "with_alignment",
]
