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
from drpo_agents.api import aoptimize, aresume, optimize, resume
from drpo_agents.artifact import (
    AlignmentArtifact,
    CandidateRecord,
    EvaluationRecord,
    ICLOptimizationRecord,
    ICLRoundRecord,
    LevelRecord,
)
from drpo_agents.aspects import DEFAULT_ASPECTS, Aspect, AspectCatalog
from drpo_agents.config import DRPOConfig
from drpo_agents.datasets import (
    load_eval_queries,
    load_icl_examples,
    load_queries,
    load_seed_icl_examples,
    load_training_queries,
)
from drpo_agents.errors import ArtifactError, ConfigError, DRPOError, ReviewRequired, StructuredOutputError
from drpo_agents.evaluation import (
    EVAL_ASPECTS,
    EvaluationReport,
    EvaluationSetup,
    aevaluate,
    evaluate,
)
from drpo_agents.icl_stage import (
    ICLStageConfig,
    aoptimize_icl_examples,
    create_icl_stage_graph,
    optimize_icl_examples,
)
from drpo_agents.memory import (
    ChromaCritiqueMemory,
    ChromaICLRetriever,
    Critique,
    CritiqueMemory,
    InMemoryCritiqueMemory,
)
from drpo_agents.models import resolve_model, sandbox_models
from drpo_agents.official import load_official_trace
from drpo_agents.report import write_report
from drpo_agents.retrieval import HashingEmbeddings, InMemoryICLRetriever
from drpo_agents.runnable import with_alignment
from drpo_agents.schemas import (
    AnswerEvaluation,
    AnswerRewrite,
    AspectScore,
    AspectSelection,
    ICLExample,
    PairwiseVerdict,
    PromptProposal,
    PromptProposals,
)
from drpo_agents.search import DRPOInput, DRPOState, create_drpo_graph

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ASPECTS",
    "EVAL_ASPECTS",
    "AlignmentArtifact",
    "AnswerEvaluation",
    "AnswerRewrite",
    "ArtifactError",
    "Aspect",
    "AspectCatalog",
    "AspectScore",
    "AspectSelection",
    "CandidateRecord",
    "ChromaCritiqueMemory",
    "ChromaICLRetriever",
    "ConfigError",
    "Critique",
    "CritiqueMemory",
    "DRPOConfig",
    "DRPOError",
    "DRPOInput",
    "DRPOState",
    "EvaluationRecord",
    "EvaluationReport",
    "EvaluationSetup",
    "HashingEmbeddings",
    "ICLExample",
    "ICLOptimizationRecord",
    "ICLRoundRecord",
    "ICLStageConfig",
    "InMemoryCritiqueMemory",
    "InMemoryICLRetriever",
    "Judge",
    "LevelRecord",
    "PairwiseVerdict",
    "PromptProposal",
    "PromptProposals",
    "PromptRewriter",
    "Responder",
    "ReviewRequired",
    "StructuredOutputError",
    "aevaluate",
    "aoptimize",
    "aoptimize_icl_examples",
    "aresume",
    "create_drpo_graph",
    "create_icl_stage_graph",
    "evaluate",
    "load_eval_queries",
    "load_icl_examples",
    "load_official_trace",
    "load_queries",
    "load_seed_icl_examples",
    "load_training_queries",
    "optimize",
    "optimize_icl_examples",
    "resolve_model",
    "resume",
    "sandbox_models",
    "with_alignment",
    "write_report",
]
