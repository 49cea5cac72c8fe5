"""The options of one evaluation, shared by ``evaluate`` and ``aevaluate`` (validated, frozen)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    SkipValidation,
    ValidationError,
    field_validator,
)
from typing_extensions import TypedDict

from drpo_agents.artifact import AlignmentArtifact, ArtifactSource, load_artifact
from drpo_agents.config import ResponderMode, StructuredOutputMethod
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.errors import ConfigError
from drpo_agents.evaluation.gate import GateThresholds
from drpo_agents.evaluation.setups import EVAL_ASPECTS, EvaluationSetup


class EvaluationOptions(BaseModel):
    """What to evaluate and how: the models, the setups, the statistics and the call settings.

    ``evaluate(queries, options)`` and ``evaluate(queries, responder=..., judge=..., ...)`` are the
    same call; keywords given beside ``options`` override its fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    responder: str | InstanceOf[BaseLanguageModel[Any]] = Field(
        ..., description='The model answering (chat or completion model, or "provider:model").'
    )
    judge: str | InstanceOf[BaseChatModel] = Field(
        ..., description="The judge model (or string): it scores every answer and judges the comparisons."
    )
    artifact: AlignmentArtifact | None = Field(
        None,
        description="A DRPO artifact (or a path to artifact.json or a run folder, or an artifact dict), "
        "evaluated as setup drpo (its prompt + retrieved ICL examples).",
    )
    baseline: AlignmentArtifact | None = Field(
        None,
        description="The deployed artifact (or its file or run folder), evaluated as setup "
        "'deployed' for the gate's paired gain and max_regression.",
    )
    gate: GateThresholds | None = Field(
        None, description="Thresholds the reference must meet; the report's gate holds the verdict."
    )
    prompts: Mapping[str, str] | None = Field(None, description="Extra setups, name -> system prompt.")
    setups: Sequence[EvaluationSetup] | None = Field(None, description="Further fully specified setups.")
    include_base: bool = Field(True, description="Include the plain base prompt.")
    include_urial: bool = Field(True, description="Include the URIAL-style baseline.")
    reference: str | None = Field(
        None,
        description="The setup compared pairwise with every other one (default drpo when an artifact "
        "is given; no pairwise judging without a reference).",
    )
    allow_overlap: bool = Field(
        False, description="Evaluate even if queries overlap the artifact's training or ICL queries."
    )
    # Embeddings objects and plain embedding functions are both accepted: no isinstance check.
    embeddings: SkipValidation[EmbeddingsLike | None] = Field(
        None,
        description="Embeddings for ICL retrieval (default: those the artifact's search used, else the "
        "packaged MiniLM).",
    )
    aspects: Sequence[str] = Field(EVAL_ASPECTS, description="Aspects every answer is scored on.")
    resamples: int = Field(1000, description="Bootstrap resamples.")
    confidence: float = Field(0.95, description="Confidence level of the bootstrap intervals.")
    seed: int = Field(0, description="Seed of the bootstrap.")
    max_concurrency: int = Field(
        8, ge=1, description="aevaluate only: most answer or comparison tasks in flight at once."
    )
    responder_mode: ResponderMode = Field("auto", description="As in DRPOConfig.")
    structured_output_method: StructuredOutputMethod = Field("auto", description="As in DRPOConfig.")
    max_parse_retries: int = Field(2, description="As in DRPOConfig.")
    prompts_dir: Path | None = Field(None, description="As in DRPOConfig.")
    callbacks: SkipValidation[Callbacks] = Field(
        None, description="LangChain callbacks for every model call."
    )
    journal: Path | None = Field(
        None,
        description="A response journal file: every finished call is kept there, and an evaluation "
        "run again with the same file (after a crash) replays them instead of calling again.",
    )

    @field_validator("artifact", "baseline", mode="before")
    @classmethod
    def _load_artifact(cls, value: Any) -> AlignmentArtifact | None:
        return None if value is None else load_artifact(value)

    @classmethod
    def of_call(cls, options: EvaluationOptions | None, overrides: EvaluationKeywords) -> EvaluationOptions:
        """``options`` with the keyword arguments of an ``evaluate`` call applied over it.

        Raises:
            ConfigError: if a value is invalid or a model is missing.
        """
        fields: dict[str, Any] = dict(options) if options is not None else {}
        try:
            return cls(**{**fields, **overrides})
        except ValidationError as exc:
            raise ConfigError(f"invalid evaluation options: {exc}") from exc


class EvaluationKeywords(TypedDict, total=False):
    """The fields of :class:`EvaluationOptions` as keyword arguments of ``evaluate``/``aevaluate``
    (a test keeps the two in step)."""

    responder: str | BaseLanguageModel[Any]
    judge: str | BaseChatModel
    artifact: ArtifactSource | None
    baseline: ArtifactSource | None
    gate: GateThresholds | None
    prompts: Mapping[str, str] | None
    setups: Sequence[EvaluationSetup] | None
    include_base: bool
    include_urial: bool
    reference: str | None
    allow_overlap: bool
    embeddings: EmbeddingsLike | None
    aspects: Sequence[str]
    resamples: int
    confidence: float
    seed: int
    max_concurrency: int
    responder_mode: ResponderMode
    structured_output_method: StructuredOutputMethod
    max_parse_retries: int
    prompts_dir: Path | None
    callbacks: Callbacks
    journal: Path | None
