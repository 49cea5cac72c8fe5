"""Search configuration: one validated object with every knob of a DRPO run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drpo_agents.errors import ConfigError
from drpo_agents.json_types import JsonObject

ResponderMode = Literal["auto", "chat", "completion"]
StructuredOutputMethod = Literal["auto", "function_calling", "json_schema", "json_mode", "text"]
MemoryScope = Literal["model", "run", "all"]
Role = Literal["responder", "judge", "rewriter"]


class ModelPrice(BaseModel):
    """What a model costs, in any currency, per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(..., ge=0)
    output_per_million: float = Field(..., ge=0)


CachePolicy = Literal["aspects", "all", "off"]

DEFAULT_INITIAL_PROMPT = "You are a helpful assistant."

# Reply caps per role, in tokens, so no call can run to the end of a server's context (a weak
# model in JSON mode can). The responder's leaves room for a full long-form answer (a cut-off
# answer would be judged incomplete); the judge's fits 5 aspects with a rationale each (the
# reference data's longest reasoning is ~900 characters, ~225 tokens); the rewriter's fits
# n_actions=3 proposals of analysis, thought and an 8-bullet prompt, or one rewritten ICL answer.
DEFAULT_ROLE_MAX_TOKENS: dict[Role, int] = {"responder": 1024, "judge": 1024, "rewriter": 2048}


class DRPOConfig(BaseModel):
    """Hyper-parameters of a DRPO optimisation.

    The defaults reproduce the reference search (beam 2, 3 actions, depth 20 with up to 10
    extra levels, one training query per level, 2 retrieved ICL examples). Every field is
    validated, so a typo or an impossible value fails before any model is called.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    beam_size: int = Field(2, ge=1, le=32, description="Candidates kept per level.")
    n_actions: int = Field(3, ge=1, le=16, description="New prompts proposed per expanded candidate.")
    depth: int = Field(20, ge=1, le=1000, description="Number of search levels.")
    max_depth_increase: int = Field(
        10, ge=0, le=1000, description="Extra levels granted when a whole level is skipped."
    )
    queries_per_step: int = Field(1, ge=1, le=256, description="Training queries judged per level.")
    skip_threshold: float = Field(
        4.5,
        ge=1.0,
        le=5.0,
        description="A candidate whose answers score above this mean (or all 5s) is kept unchanged.",
    )
    icl_k: int = Field(2, ge=0, le=32, description="ICL examples retrieved into the responder's context.")
    icl_min_similarity: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Relevance floor of ICL retrieval (cosine similarity): a less similar example is "
        "never placed in context, so an unrelated query gets fewer examples or none. None: the "
        "embeddings' calibrated floor (MiniLM 0.3, hashing 0.2).",
    )
    icl_iters: int = Field(
        0, ge=0, le=50, description="Rounds of DRPO's first stage (ICL answer optimisation); 0 skips it."
    )
    initial_prompt: str = Field(DEFAULT_INITIAL_PROMPT, min_length=1)
    prompt_history: int = Field(3, ge=0, le=20, description="Earlier prompt versions shown to the rewriter.")
    max_bullets: int = Field(8, ge=0, le=50, description="Most bullet points an optimized prompt may hold.")
    max_new_bullets: int = Field(2, ge=0, le=20, description="Most bullet points a single rewrite may add.")
    max_prompt_tokens: int | None = Field(
        None,
        ge=8,
        description="Budget for the optimized system prompt (~4 characters per token); over it is rejected.",
    )
    max_icl_tokens: int | None = Field(
        None,
        ge=1,
        description="Budget for the ICL examples in the responder's context (~4 characters per token); "
        "retrieved examples that do not fit are left out, the most similar kept first.",
    )
    responder_mode: ResponderMode = "auto"
    structured_output_method: StructuredOutputMethod = Field(
        "auto",
        description="How the judge and rewriter get structured replies; 'auto' discovers what each "
        "endpoint accepts (json_schema -> function_calling -> json_mode -> text).",
    )
    role_structured_output: dict[Role, StructuredOutputMethod] = Field(
        default_factory=dict,
        description="Per-role override of structured_output_method, e.g. {'judge': 'json_mode'}.",
    )
    role_max_tokens: dict[Role, int] = Field(
        default_factory=lambda: dict(DEFAULT_ROLE_MAX_TOKENS),
        description="Reply cap per role in tokens (roles left out keep their default); a model "
        "with its own max_tokens setting keeps it.",
    )
    max_parse_retries: int = Field(
        2, ge=0, le=10, description="Re-asks after an invalid structured answer (with the error shown)."
    )
    shuffle_queries: bool = Field(True, description="Visit training queries in a seeded random order.")
    seed: int = Field(0, description="Seed of every random choice the search makes.")
    max_concurrency: int = Field(8, ge=1, le=1024, description="Most model calls in flight at once.")
    role_concurrency: dict[Role, int] = Field(
        default_factory=dict,
        description="Most calls in flight per role, e.g. {'judge': 4} for a rate-limited judge API.",
    )
    review: bool = Field(
        False,
        description="Pause before the artifact is written so a person can approve, edit or reject the prompt.",
    )
    validation_size: int = Field(
        0,
        ge=0,
        le=1000,
        description="Training queries held out to re-rank the final beam (0 = the reference: no validation).",
    )
    red_team_validation_size: int = Field(
        0,
        ge=0,
        le=1000,
        description="Red-team training queries (category 'red_team') also held out for validation; "
        "a candidate whose Safety score on them drops is rejected (the safety constraint).",
    )
    safety_tolerance: float = Field(
        0.25,
        ge=0.0,
        le=4.0,
        description="How far (1-5 scale) Safety may drop before a candidate is rejected.",
    )
    acceptance_gate: bool = Field(
        False,
        description="A new best prompt replaces the incumbent only if its validation improvement's "
        "bootstrap interval excludes zero (needs validation_size).",
    )
    gate_confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence of the gate's interval.")
    gate_min_improvement: float = Field(
        0.0, ge=0.0, le=4.0, description="The interval's lower end must exceed this mean reward gain."
    )
    bootstrap_samples: int = Field(2000, ge=100, le=100_000, description="Resamples of the gate's bootstrap.")
    jury_size: int = Field(
        1,
        ge=1,
        le=5,
        description="Judges per answer, aggregated per aspect by median; with one judge model the "
        "extra jurors are the same model shown the aspects in a rotated order.",
    )
    length_normalization: bool = Field(
        False,
        description="Rank candidates by a length-normalised reward (see drpo_agents.rewards), so "
        "verbosity alone cannot win.",
    )
    max_tokens_budget: int | None = Field(
        None, ge=1, description="Stop at the next level boundary once this many tokens are spent."
    )
    max_cost: float | None = Field(None, gt=0, description="Stop at the next level boundary past this cost.")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Price per model, keyed by model name or identity (see the artifact's 'models').",
    )
    critique_memory: bool = Field(
        True, description="Store critiques and show the rewriter similar past ones (off = ablation)."
    )
    memory_k: int = Field(5, ge=0, le=50, description="Past critiques shown to the rewriter per rewrite.")
    memory_rules: int = Field(
        0,
        ge=0,
        le=10,
        description="General lessons distilled from earlier runs' recurring critiques, shown to the "
        "rewriter beside the specific ones (0: none; docs/REALIGN.md has the ablation).",
    )
    memory_scope: MemoryScope = Field(
        "model", description="Recall critiques from runs of the same responder model, this run only, or all."
    )
    cache: CachePolicy = Field(
        "aspects", description="Which calls the LLM cache serves: aspect selection only, every call, or none."
    )
    prompts_dir: Path | None = Field(
        None, description="Folder of prompt templates that override the packaged ones by name."
    )

    @field_validator("role_max_tokens", mode="after")
    @classmethod
    def _complete_role_max_tokens(cls, value: dict[Role, int]) -> dict[Role, int]:
        low = {role: n for role, n in value.items() if n < 1}
        if low:
            raise ValueError(f"reply caps must be at least 1 token, got {low}")
        return {**DEFAULT_ROLE_MAX_TOKENS, **value}

    @field_validator("role_structured_output", mode="after")
    @classmethod
    def _structured_roles(
        cls, value: dict[Role, StructuredOutputMethod]
    ) -> dict[Role, StructuredOutputMethod]:
        if "responder" in value:
            raise ValueError("the responder answers in plain text: set a method for 'judge' or 'rewriter'")
        return value

    def structured_output_for(self, role: Role) -> StructuredOutputMethod:
        """The structured-output method of ``role`` (its override, else the global method)."""
        return self.role_structured_output.get(role, self.structured_output_method)

    @model_validator(mode="after")
    def _check_consistency(self) -> DRPOConfig:
        if self.max_new_bullets > self.max_bullets:
            raise ValueError(
                f"max_new_bullets ({self.max_new_bullets}) cannot exceed max_bullets ({self.max_bullets})"
            )
        if self.acceptance_gate and self.validation_size == 0:
            raise ValueError("acceptance_gate needs validation queries: set validation_size > 0")
        if self.red_team_validation_size and self.validation_size == 0:
            raise ValueError("red_team_validation_size needs validation: set validation_size > 0")
        return self

    def price_of(self, model_identity: str) -> ModelPrice | None:
        """The price for a model identity (``provider:name@url``), matched by identity or name."""
        if model_identity in self.prices:
            return self.prices[model_identity]
        name = model_identity.split("@", 1)[0]
        for key in (name, name.split(":", 1)[-1]):
            if key in self.prices:
                return self.prices[key]
        return None

    @property
    def max_levels(self) -> int:
        """Upper bound on the number of levels a run can take (depth plus every extension)."""
        return self.depth + self.max_depth_increase

    def to_json_dict(self) -> JsonObject:
        """A JSON-ready copy (paths as strings), as stored in artifacts and run directories."""
        return self.model_dump(mode="json")


ConfigLike: TypeAlias = DRPOConfig | Mapping[str, Any] | None
"""A :class:`DRPOConfig`, a dict of its fields (validated the same way), or ``None`` (defaults)."""


def as_config(config: ConfigLike) -> DRPOConfig:
    """The :class:`DRPOConfig` that ``config`` describes.

    Raises:
        ConfigError: invalid fields (every problem in one line), or not a config at all.
    """
    if config is None:
        return DRPOConfig()
    if isinstance(config, DRPOConfig):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a DRPOConfig or a dict of its fields, got {type(config).__name__}")
    try:
        return DRPOConfig.model_validate(dict(config))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
