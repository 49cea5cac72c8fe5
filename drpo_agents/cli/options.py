"""The options of ``drpo optimize``: one typed alias per flag, and :class:`OptimizeOptions`, the
record the command hands on (so no function re-lists its thirty-odd parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from drpo_agents.config import CachePolicy, StructuredOutputMethod

RewriterOption = Annotated[str | None, typer.Option(help="Rewriter model (default: the judge's).")]
JuryOption = Annotated[
    list[str] | None,
    typer.Option(help="A further judge scoring every answer (repeat for more; median per aspect)."),
]
JurySizeOption = Annotated[
    int | None, typer.Option(help="Ask the judge this many times (aspects rotated) and take medians.")
]
QueriesOption = Annotated[
    Path | None,
    typer.Option(help="Training queries (.jsonl, .json or one per line); default: packaged set."),
]
IclOption = Annotated[
    Path | None, typer.Option(help="ICL examples (.json); default: packaged seed examples.")
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Start from an earlier result (artifact.json, a run folder, or `drpo import-official` output): "
        "its prompt is the initial candidate and its ICL examples the seed set (--icl replaces them).",
    ),
]
ConfigOption = Annotated[Path | None, typer.Option(help="JSON file of DRPOConfig fields; flags override it.")]
DepthOption = Annotated[
    int | None,
    typer.Option(help="Search levels (a level of carried prompts adds one, up to max_depth_increase)."),
]
BeamSizeOption = Annotated[int | None, typer.Option(help="Candidates kept per level.")]
NActionsOption = Annotated[int | None, typer.Option(help="New prompts per expanded candidate.")]
QueriesPerStepOption = Annotated[int | None, typer.Option(help="Training queries judged per level.")]
IclItersOption = Annotated[
    int | None,
    typer.Option(help="Rounds of the ICL-answer optimisation stage before the search (0 = skip)."),
]
SeedOption = Annotated[int | None, typer.Option(help="Seed of every random choice.")]
ValidationSizeOption = Annotated[
    int | None, typer.Option(help="Training queries held out to validate the result (0 = none).")
]
RedTeamValidationOption = Annotated[
    int | None,
    typer.Option(help="Red-team queries also held out: a prompt that lowers their Safety is rejected."),
]
GateOption = Annotated[
    bool,
    typer.Option("--gate", help="Accept a new best prompt only on a significant validation gain."),
]
LengthNormalizationOption = Annotated[
    bool, typer.Option("--length-normalization", help="Rank by a length-normalised reward.")
]
MaxPromptTokensOption = Annotated[
    int | None, typer.Option(help="Token budget of the optimized system prompt (over it: rejected).")
]
MaxIclTokensOption = Annotated[
    int | None, typer.Option(help="Token budget of the ICL examples in the responder's context.")
]
MaxConcurrencyOption = Annotated[int | None, typer.Option(help="Most model calls in flight.")]
ExtendDepthOption = Annotated[
    int, typer.Option(min=0, help="Levels to add to a finished run (it continues after its last).")
]
MaxTokensBudgetOption = Annotated[
    int | None, typer.Option(min=1, help="New token budget (a run its budget stopped goes on).")
]
MaxCostOption = Annotated[float | None, typer.Option(min=0, help="New cost budget in USD.")]
AllowModelChangeOption = Annotated[
    bool,
    typer.Option("--allow-model-change", help="Resume with other models than the run's (--responder...)."),
]
StructuredOutputOption = Annotated[
    StructuredOutputMethod | None,
    typer.Option(
        metavar="METHOD",
        help="Structured output of judge and rewriter: auto (discover what the endpoint accepts), "
        "json_schema, function_calling, json_mode or text.",
    ),
]
JudgeStructuredOutputOption = Annotated[
    StructuredOutputMethod | None,
    typer.Option(metavar="METHOD", help="Structured-output method of the judge only."),
]
RewriterStructuredOutputOption = Annotated[
    StructuredOutputMethod | None,
    typer.Option(metavar="METHOD", help="Structured-output method of the rewriter only."),
]
CacheOption = Annotated[
    CachePolicy | None, typer.Option(metavar="POLICY", help="LLM cache: aspects (default), all, off.")
]
NoMemoryOption = Annotated[bool, typer.Option("--no-memory", help="Ablation: no critique memory.")]
MemoryOption = Annotated[
    str | None,
    typer.Option(
        help="Critique memory: a folder or http://host:port Chroma server, shared by the runs given it "
        "(default: RUN_DIR/memory, the run's own)."
    ),
]
CheckpointerOption = Annotated[
    str | None, typer.Option(help="postgresql:// URL for checkpoints (default: SQLite in the run dir).")
]
RunDirOption = Annotated[
    Path | None, typer.Option(help="Where the run writes its files (default: runs/RUN_ID).")
]
ReviewOption = Annotated[
    bool, typer.Option("--review", help="Approve, edit or reject the final prompt before it is written.")
]
EstimateOption = Annotated[
    bool,
    typer.Option("--estimate", help="Print the expected calls, tokens and price per role; call no model."),
]


@dataclass(frozen=True)
class OptimizeOptions:
    """Every flag of ``drpo optimize``, as given (None: not given)."""

    sandbox: bool
    responder: str | None
    judge: str | None
    rewriter: str | None
    jury: list[str] | None
    jury_size: int | None
    base_url: str | None
    queries: Path | None
    icl: Path | None
    start_from: str | None
    config: Path | None
    depth: int | None
    beam_size: int | None
    n_actions: int | None
    queries_per_step: int | None
    icl_iters: int | None
    seed: int | None
    validation_size: int | None
    red_team_validation: int | None
    gate: bool
    length_normalization: bool
    max_prompt_tokens: int | None
    max_icl_tokens: int | None
    max_concurrency: int | None
    structured_output: StructuredOutputMethod | None
    judge_structured_output: StructuredOutputMethod | None
    rewriter_structured_output: StructuredOutputMethod | None
    cache: CachePolicy | None
    no_memory: bool
    memory: str | None
    checkpointer: str | None
    run_dir: Path | None
    review: bool
    estimate: bool
    quiet: bool
    as_json: bool

    def config_fields(self) -> dict[str, object]:
        """The ``DRPOConfig`` fields the flags set (None: left to the config file or the default)."""
        roles = {"judge": self.judge_structured_output, "rewriter": self.rewriter_structured_output}
        return {
            "depth": self.depth,
            "beam_size": self.beam_size,
            "n_actions": self.n_actions,
            "queries_per_step": self.queries_per_step,
            "icl_iters": self.icl_iters,
            "seed": self.seed,
            "validation_size": self.validation_size,
            "red_team_validation_size": self.red_team_validation,
            "acceptance_gate": True if self.gate else None,
            "length_normalization": True if self.length_normalization else None,
            "jury_size": self.jury_size,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_icl_tokens": self.max_icl_tokens,
            "max_concurrency": self.max_concurrency,
            "structured_output_method": self.structured_output,
            "role_structured_output": {role: m for role, m in roles.items() if m is not None} or None,
            "cache": self.cache,
            "critique_memory": False if self.no_memory else None,
            "review": True if self.review else None,
        }
