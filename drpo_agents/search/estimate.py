"""What a run will cost: expected model calls, tokens and price per role, without calling a model.

The estimate walks the search's structure level by level (see :mod:`drpo_agents.search.graph`):
the same seeded query order and validation split as the run, one aspect selection per query,
``beam_size x n_actions`` children per level (``n_actions`` at level 1, whose only parent is
the initial prompt), one answer and ``jury_size`` scores per child and query, one rewrite per
expanded parent, the ICL stage and the validation or acceptance-gate answers. Each call's tokens
come from :mod:`drpo_agents.search.call_sizes` (the real templates, queries and ICL examples;
replies of :class:`OutputLengths`).

Assumptions, stated with every estimate: no candidate is carried unchanged (every beam candidate
is rewritten: the most calls per level, but ``depth`` levels, no extension), every proposal is accepted, no structured reply is
re-asked (``parse_retry_rate`` adds a share of re-asks), the ICL stage runs all its rounds and
the gate sees a new best prompt at every level (both upper bounds). The upper bound adds every
depth extension (``max_depth_increase`` more levels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from drpo_agents.config import DRPOConfig
from drpo_agents.conversations import history_text
from drpo_agents.datasets import Query
from drpo_agents.embeddings import EmbeddingsLike
from drpo_agents.icl_sets import seed_icl_examples_for
from drpo_agents.prompts import approx_tokens
from drpo_agents.schemas import ICLExample
from drpo_agents.search.beam import split_queries
from drpo_agents.search.budget import cost_of, role_price
from drpo_agents.search.call_sizes import CallSizes, OutputLengths
from drpo_agents.search.selection import selection_policy

__all__ = ["OutputLengths", "RoleEstimate", "RunEstimate", "estimate_run"]

ESTIMATE_ROLES = ("responder", "judge", "jury", "rewriter")  # the usage keys a run reports


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


def _walk(
    config: DRPOConfig,
    bank: Sequence[Query],
    validation: Sequence[Query],
    calls: CallSizes,
    examples: Sequence[ICLExample],
    levels: int,
    jurors: tuple[int, int],
    retry_rate: float,
) -> _Tally:
    """Every call of a run of ``levels`` search levels, added up per role."""
    tally = _Tally(retry_rate)
    policy = selection_policy(config)
    per_step, judges, further = config.queries_per_step, jurors[0], jurors[1]

    def select(queries: Sequence[Query]) -> None:
        for query in queries:
            tally.add("judge", 1, *calls.select(sized(query)), parsed=True)

    def score(query: str, answer_tokens: int, scorers: int) -> None:
        tally.add("judge", scorers, *calls.score(query, answer_tokens), parsed=True)

    def evaluate(level: int, queries: Sequence[Query], candidates: int) -> None:
        for query in queries:
            tally.add("responder", candidates, *calls.respond(level, sized(query)), parsed=False)
            score(sized(query), calls.answer, candidates * judges)
            if further:  # distinct juror models report as "jury"
                tally.add("jury", candidates * further, *calls.score(sized(query), calls.answer), parsed=True)

    for example in examples if config.icl_iters else ():
        # The ICL stage: select, score, then every round rewrites and rescores (judge only, no jury).
        shown: Query = {"id": "", "query": example.query}
        if example.history:
            shown["history"] = list(example.history)
        select([shown])
        score(sized(shown), approx_tokens(example.answer), 1)
        rewrite_in, rewrite_out = calls.rewrite_answer(example)
        tally.add("rewriter", config.icl_iters, rewrite_in, rewrite_out, parsed=True)
        score(sized(shown), max(1, rewrite_out - calls.lengths.proposal), config.icl_iters)

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
        select([*batch, *(validation if policy.validates_each_level and level == 0 else [])])
        evaluate(level, batch, children)
        if policy.validates_each_level:
            evaluate(level, validation, 1)  # the incumbent at level 0, then each level's new best
    if policy.validates_at_end and validation:
        select(validation)
        evaluate(levels, validation, min(config.beam_size, children) if levels else 0)
        evaluate(0, validation, 1)  # the initial prompt
    return tally


def sized(query: Query) -> str:
    """The text a call about ``query`` carries: a conversation's earlier turns count too."""
    history = history_text(query.get("history", []))
    return (
        f"{query.get('system', '')}\n{history}\n{query['query']}"
        if history or "system" in query
        else query["query"]
    )


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
    embeddings: EmbeddingsLike | None = None,
    output_lengths: OutputLengths | None = None,
    parse_retry_rate: float = 0.0,
) -> RunEstimate:
    """The expected calls, tokens and price per role of ``optimize(queries, config=config)``.

    Calls no language model and writes nothing (ICL examples are retrieved for each query with
    the run's embeddings, as the run will).

    Args:
        config: the run's config (its ``prices`` table prices the roles).
        queries: the training queries, as :func:`~drpo_agents.optimize` takes them.
        models: role -> model name or identity (``"responder"``, ``"judge"``, ``"rewriter"``,
            ``"jury"``), as the price table is keyed; without it, no price is given.
        jurors: further judge models (``optimize``'s ``jury``); 0 uses ``config.jury_size``.
        icl_examples: the ICL examples the responder retrieves from (default: the seed set the
            run would start from, :func:`~drpo_agents.icl_sets.seed_icl_examples_for`).
        embeddings: the run's ICL retrieval embeddings (default: the run's default, MiniLM).
        output_lengths: typical reply lengths; the defaults suit capable chat models.
        parse_retry_rate: expected re-asks per structured call (0 = none).

    Raises:
        ConfigError: if the queries are too few for the config (as the run itself would).
    """
    lengths = output_lengths or OutputLengths()
    bank, validation = split_queries(config, queries)
    examples = list(icl_examples) if icl_examples is not None else seed_icl_examples_for([*bank, *validation])
    calls = CallSizes(config, examples, lengths, embeddings)
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
