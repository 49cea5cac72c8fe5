"""The result of a run: :class:`AlignmentArtifact` (``result``), its records (``records``), and
:func:`load_artifact`, which reads one from whatever form a user holds (``sources``)."""

from __future__ import annotations

from drpo_agents.artifact.records import (
    CandidateRecord,
    EvaluationRecord,
    FailureRecord,
    GateDecision,
    ICLOptimizationRecord,
    ICLRetrievalRecord,
    ICLRoundRecord,
    LevelRecord,
    ParentRecord,
    RoleFailures,
    TokenUsage,
    ValidationRecord,
)
from drpo_agents.artifact.result import ARTIFACT_FORMAT_VERSION, FAILURE_ROLES, AlignmentArtifact
from drpo_agents.artifact.sources import ArtifactSource, load_artifact

__all__ = [
    "ARTIFACT_FORMAT_VERSION",
    "FAILURE_ROLES",
    "AlignmentArtifact",
    "ArtifactSource",
    "CandidateRecord",
    "EvaluationRecord",
    "FailureRecord",
    "GateDecision",
    "ICLOptimizationRecord",
    "ICLRetrievalRecord",
    "ICLRoundRecord",
    "LevelRecord",
    "ParentRecord",
    "RoleFailures",
    "TokenUsage",
    "ValidationRecord",
    "load_artifact",
]
