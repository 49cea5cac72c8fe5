"""What a run will cost: expected model calls, tokens and price per role, without calling a model.

The estimate walks the search's structure level by level (see :mod:`drpo_agents.search.graph`):
the same seeded query order and validation split as the run, one aspect selection per query,
``beam_size x n_actions`` children per level (``n_actions`` at level 1, whose only parent is
the initial prompt), one answer and ``jury_size`` scores per child and query, one rewrite per
expanded parent, the ICL stage and the validation or acceptance-gate answers. Input tokens come
from the real prompt templates rendered with the real queries and ICL examples; replies are
taken to be :class:`OutputLengths` long. Token counts use :func:`~drpo_agents.prompts.approx_tokens`
(a provider's tokenizer differs by some percent).

Assumptions, stated with every estimate: no candidate is carried unchanged (so no depth
extension: an upper bound per level), every proposal is accepted, no structured reply is
re-asked (``parse_retry_rate`` adds a share of re-asks), the ICL stage runs all its rounds and
the gate sees a new best prompt at every level (both upper bounds). The upper bound adds every
depth extension (``max_depth_increase`` more levels).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from drpo_agents.agents.rewriter import proposals_schema
from drpo_agents.aspects import AspectCatalog
from drpo_agents.config import DRPOConfig, Role
from drpo_agents.datasets import load_seed_icl_examples
from drpo_agents.prompts import approx_tokens, render_prompt
from drpo_agents.schemas import AnswerEvaluation, AnswerRewrite, AspectSelection, ICLExample, ProposalLimits
from drpo_agents.search.beam import split_queries
from drpo_agents.search.budget import cost_of, role_price
from drpo_agents.search.tasks import validates_at_end

ESTIMATE_ROLES = ("responder", "judge", "jury", "rewriter")  # the usage keys a run reports
_SCORE_FRAME_TOKENS = 12


class OutputLengths(BaseModel):
    """Typical reply lengths in tokens (each capped by the role's ``role_max_tokens``).

    The defaults are guesses for capable chat models; a sandbox model answers more briefly.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    answer: int = Field(350, ge=1, description="A responder answer (also an ICL answer rewrite).")
    aspect_selection: int = Field(150, ge=1, description="An aspect selection (analysis and names).")
    aspects_per_query: int = Field(3, ge=1, le=5, description="Aspects the judge selects per query.")
    score_per_aspect: int = Field(60, ge=1, description="One aspect's score with its rationale.")
    proposal: int = Field(120, ge=0, description="A proposal's analysis and thought, beside its prompt.")
    prompt_bullet: int = Field(20, ge=0, description="One bullet a rewrite adds to the system prompt.")


class RoleEstimate(TypedDict):
    """One role's expected usage (``cost`` is None when the price table lacks its model)."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None


class RunEstimate(BaseModel):
    """What a run is expected to cost, per role and in total, and the same at its upper bound."""

    model_config = ConfigDict(frozen=True)

    roles: dict[str, RoleEstimate]
    levels: int = Field(description="Search levels after the initial prompt's (no depth extension).")
    upper_bound_levels: int = Field(description="Search levels with every depth extension.")
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None
    upper_bound_calls: int
    upper_bound_cost: float | None
    assumptions: str


class _Tally:
    """Calls and tokens per role, added up as the structure is walked."""

    def __init__(self, retry_rate: float) -> None:
        self.retry_rate = retry_rate
        self.counts: dict[str, list[float]] = {}

    def add(
        self, role: str, calls: float, input_tokens: float, output_tokens: float, *, parsed: bool
    ) -> None:
        # A re-ask resends the conversation with the bad reply and the error: ~ one more call.
        factor = 1 + (self.retry_rate if parsed else 0.0)
        row = self.counts.setdefault(role, [0.0, 0.0, 0.0])
        row[0] += calls * factor
        row[1] += calls * factor * input_tokens
        row[2] += calls * factor * output_tokens


class _Calls:
    """Each kind of model call's input and output tokens, from the rendered templates."""

    def __init__(self, config: DRPOConfig, examples: Sequence[ICLExample], lengths: OutputLengths) -> None:
        self.config, self.lengths = config, lengths
        self.dir = config.prompts_dir
        self.catalog = AspectCatalog.default()
        caps = config.role_max_tokens
        self.answer = min(lengths.answer, caps["responder"])
        self.score_out = min(lengths.aspects_per_query * lengths.score_per_aspect, caps["judge"])
        self.select_out = min(lengths.aspect_selection, caps["judge"])
        self.aspects = self.catalog.describe(list(self.catalog)[: lengths.aspects_per_query])
        shots = [approx_tokens(e.query) + approx_tokens(e.answer) for e in examples]
        icl = sum(shots) / len(shots) * min(config.icl_k, len(shots)) if shots else 0.0
        self.icl = min(icl, config.max_icl_tokens) if config.max_icl_tokens is not None else icl
        # A score's reply also carries its JSON keys and the aspect's name (~12 tokens).
        self.rationale = "x" * 4 * max(1, lengths.score_per_aspect - _SCORE_FRAME_TOKENS)

    def _format_turn(self, role: Role, schema: type[BaseModel] | dict[str, Any]) -> int:
        # The text and json_mode methods send the schema as a turn; tools send it outside the messages.
        if self.config.structured_output_for(role) not in ("text", "json_mode"):
            return 0
        body = schema if isinstance(schema, dict) else schema.model_json_schema()
        return approx_tokens(
            render_prompt("structured_output_format", self.dir, schema=json.dumps(body, indent=1))
        )

    def prompt_tokens(self, level: int) -> int:
        """A level's candidate prompt: the initial one plus the bullets rewrites may have added."""
        bullets = min(level * self.config.max_new_bullets, self.config.max_bullets)
        size = approx_tokens(self.config.initial_prompt) + bullets * self.lengths.prompt_bullet
        cap = self.config.max_prompt_tokens
        return min(size, cap) if cap is not None else size

    def respond(self, level: int, query: str) -> tuple[float, int]:
        if self.config.responder_mode == "completion":
            frame = render_prompt("completion_responder", self.dir, system_prompt="", examples="", query="")
            return approx_tokens(frame) + self.prompt_tokens(level) + self.icl + approx_tokens(
                query
            ), self.answer
        return self.prompt_tokens(level) + self.icl + approx_tokens(query), self.answer

    def select(self, query: str) -> tuple[int, int]:
        text = render_prompt("judge_system", self.dir) + render_prompt(
            "aspect_selection", self.dir, query=query, aspect_catalog=self.catalog.describe()
        )
        return approx_tokens(text) + self._format_turn("judge", AspectSelection), self.select_out

    def score(self, query: str, answer_tokens: int) -> tuple[int, int]:
        text = render_prompt("judge_system", self.dir) + render_prompt(
            "answer_scoring", self.dir, query=query, answer="x" * 4 * answer_tokens, aspects=self.aspects
        )
        return approx_tokens(text) + self._format_turn("judge", AnswerEvaluation), self.score_out

    def _evaluation(self) -> str:
        return "\n".join(f"- Aspect: 3/5 - {self.rationale}" for _ in range(self.lengths.aspects_per_query))

    def rewrite(self, level: int, cases: Sequence[str], lessons: int) -> tuple[int, int]:
        """The rewrite at ``level`` of a parent judged on ``cases`` (its last level's queries)."""
        cfg, n = self.config, self.config.n_actions
        parent = "x" * 4 * self.prompt_tokens(level - 1)
        rendered = "\n".join(
            render_prompt(
                "rewrite_case", self.dir, query=q, answer="x" * 4 * self.answer, evaluation=self._evaluation()
            )
            for q in cases
        )
        lesson = f'- [Aspect 3/5] on a similar query ("{"x" * 90}"): {self.rationale}'
        history = min(level - 1, cfg.prompt_history)
        text = render_prompt("rewriter_system", self.dir) + render_prompt(
            "prompt_rewrite",
            self.dir,
            current_prompt=parent,
            previous_prompts="\n---\n".join([parent] * history) or "(none)",
            cases=rendered,
            lessons="\n".join([lesson] * lessons) or "(none yet)",
            num_prompts=n,
            max_bullets=cfg.max_bullets,
            max_new_bullets=cfg.max_new_bullets,
            size_rule="Keep the prompt as short as it can be while doing its job.",
        )
        schema = proposals_schema(ProposalLimits(n, cfg.max_bullets, cfg.max_new_bullets))
        output = n * (self.lengths.proposal + self.prompt_tokens(level))
        return approx_tokens(text) + self._format_turn("rewriter", schema), min(
            output, cfg.role_max_tokens["rewriter"]
        )

    def rewrite_answer(self, example: ICLExample) -> tuple[int, int]:
        text = render_prompt("icl_rewriter_system", self.dir) + render_prompt(
            "icl_answer_rewrite",
            self.dir,
            query=example.query,
            answer=example.answer,
            evaluation=self._evaluation(),
            earlier_attempts="(none)",
        )
        output = min(
            self.lengths.proposal + approx_tokens(example.answer), self.config.role_max_tokens["rewriter"]
        )
        return approx_tokens(text) + self._format_turn("rewriter", AnswerRewrite), output


def _walk(
    config: DRPOConfig,
    bank: Sequence[Mapping[str, str]],
    validation: Sequence[Mapping[str, str]],
    calls: _Calls,
    examples: Sequence[ICLExample],
    levels: int,
    jurors: tuple[int, int],
    retry_rate: float,
) -> _Tally:
    """Every call of a run of ``levels`` search levels, added up per role."""
    tally = _Tally(retry_rate)
    per_step, judges, further = config.queries_per_step, jurors[0], jurors[1]

    def select(queries: Sequence[Mapping[str, str]]) -> None:
        for query in queries:
            tally.add("judge", 1, *calls.select(query["query"]), parsed=True)

    def score(query: str, answer_tokens: int, scorers: int) -> None:
        tally.add("judge", scorers, *calls.score(query, answer_tokens), parsed=True)

    def evaluate(level: int, queries: Sequence[Mapping[str, str]], candidates: int) -> None:
        for query in queries:
            tally.add("responder", candidates, *calls.respond(level, query["query"]), parsed=False)
            score(query["query"], calls.answer, candidates * judges)
            if further:  # distinct juror models report as "jury"
                tally.add(
                    "jury", candidates * further, *calls.score(query["query"], calls.answer), parsed=True
                )

    for example in examples if config.icl_iters else ():
        # The ICL stage: select, score, then every round rewrites and rescores (judge only, no jury).
        select([{"query": example.query}])
        score(example.query, approx_tokens(example.answer), 1)
        rewrite_in, rewrite_out = calls.rewrite_answer(example)
        tally.add("rewriter", config.icl_iters, rewrite_in, rewrite_out, parsed=True)
        score(example.query, max(1, rewrite_out - calls.lengths.proposal), config.icl_iters)

    children = 1  # level 0 evaluates the initial prompt alone
    for level in range(levels + 1):
        batch = bank[level * per_step : (level + 1) * per_step]
        if level:
            parents = 1 if level == 1 else min(config.beam_size, children)
            # Level 1's only parent has no other critiques to recall (fresh memory).
            lessons = config.memory_k if config.critique_memory and level >= 2 else 0
            cases = [q["query"] for q in bank[(level - 1) * per_step : level * per_step]]
            tally.add("rewriter", parents, *calls.rewrite(level, cases, lessons), parsed=True)
            children = parents * config.n_actions
        select([*batch, *(validation if config.acceptance_gate and level == 0 else [])])
        evaluate(level, batch, children)
        if config.acceptance_gate:
            evaluate(level, validation, 1)  # the incumbent at level 0, then each level's new best
    if validates_at_end(config) and validation:
        select(validation)
        evaluate(levels, validation, min(config.beam_size, children) if levels else 0)
        evaluate(0, validation, 1)  # the initial prompt
    return tally


def _roles(config: DRPOConfig, models: Mapping[str, str] | None, tally: _Tally) -> dict[str, RoleEstimate]:
    roles: dict[str, RoleEstimate] = {}
    for role in ESTIMATE_ROLES:
        if role not in tally.counts:
            continue
        calls, input_tokens, output_tokens = (round(v) for v in tally.counts[role])
        price = role_price(config, models, role) if models is not None else None
        cost = cost_of(price, input_tokens, output_tokens) if price is not None else None
        roles[role] = {
            "calls": calls,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost": cost,
        }
    return roles


def _total_cost(roles: Mapping[str, RoleEstimate]) -> float | None:
    costs = [r["cost"] for r in roles.values()]
    return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


def estimate_run(
    config: DRPOConfig,
    queries: Sequence[Any],
    *,
    models: Mapping[str, str] | None = None,
    jurors: int = 0,
    icl_examples: Sequence[ICLExample] | None = None,
    output_lengths: OutputLengths | None = None,
    parse_retry_rate: float = 0.0,
) -> RunEstimate:
    """The expected calls, tokens and price per role of ``optimize(queries, config=config)``.

    Calls no model and writes nothing.

    Args:
        config: the run's config (its ``prices`` table prices the roles).
        queries: the training queries, as :func:`~drpo_agents.optimize` takes them.
        models: role -> model name or identity (``"responder"``, ``"judge"``, ``"rewriter"``,
            ``"jury"``), as the price table is keyed; without it, no price is given.
        jurors: further judge models (``optimize``'s ``jury``); 0 uses ``config.jury_size``.
        icl_examples: the ICL examples the responder retrieves from (default: the seed set).
        output_lengths: typical reply lengths; the defaults suit capable chat models.
        parse_retry_rate: expected re-asks per structured call (0 = none).

    Raises:
        DRPOError: if the queries are too few for the config (as the run itself would).
    """
    lengths = output_lengths or OutputLengths()
    examples = list(icl_examples) if icl_examples is not None else load_seed_icl_examples()
    bank, validation = split_queries(config, queries)
    calls = _Calls(config, examples, lengths)
    judges = (1, jurors) if jurors else (config.jury_size, 0)
    batches = math.ceil(len(bank) / config.queries_per_step) - 1  # levels the queries allow
    levels, most = min(config.depth, batches), min(config.max_levels, batches)
    roles = _roles(
        config, models, _walk(config, bank, validation, calls, examples, levels, judges, parse_retry_rate)
    )
    upper = _roles(
        config, models, _walk(config, bank, validation, calls, examples, most, judges, parse_retry_rate)
    )
    cost, upper_cost = _total_cost(roles), _total_cost(upper)
    upper_calls = sum(r["calls"] for r in upper.values())
    price = f"{upper_cost:.4f}" if upper_cost is not None else "no price"
    assumptions = (
        f"{levels} levels after the initial prompt's, no prompt carried unchanged, every proposal "
        f"accepted, {parse_retry_rate:.0%} re-asks; replies ~{calls.answer} tokens per answer, "
        f"~{calls.score_out} per score ({lengths.aspects_per_query} aspects), ~{calls.select_out} per "
        f"aspect selection; ICL stage and gate at their most. Upper bound with every depth extension "
        f"({most} levels): {upper_calls:,} calls, {price}."
    )
    return RunEstimate(
        roles=roles,
        levels=levels,
        upper_bound_levels=most,
        calls=sum(r["calls"] for r in roles.values()),
        input_tokens=sum(r["input_tokens"] for r in roles.values()),
        output_tokens=sum(r["output_tokens"] for r in roles.values()),
        cost=cost,
        upper_bound_calls=upper_calls,
        upper_bound_cost=upper_cost,
        assumptions=assumptions,
    )
