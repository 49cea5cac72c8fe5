"""The budget arithmetic: tokens and cost spent so far, and whether a budget stops the search."""

from __future__ import annotations

from collections.abc import Mapping

from drpo_agents.config import DRPOConfig, ModelPrice

BUDGET_STOPS = ("token budget", "cost budget")  # how budget stop reasons begin


def cost_of(price: ModelPrice, input_tokens: int | float, output_tokens: int | float) -> float:
    """What ``input_tokens`` and ``output_tokens`` cost at ``price`` (the one tokens-to-price rule:
    the budget and the run estimate both use it)."""
    return (input_tokens * price.input_per_million + output_tokens * price.output_per_million) / 1_000_000


def role_price(config: DRPOConfig, models: Mapping[str, str], role: str) -> ModelPrice | None:
    """The price of ``role``'s model (``models`` maps roles to model identities or names), if listed."""
    return config.price_of(models.get(role, role))


def spent(
    config: DRPOConfig, models: Mapping[str, str], usage: Mapping[str, Mapping[str, int]]
) -> tuple[int, float | None]:
    """Tokens spent so far, and their cost if every role that spent any has a price
    (``models`` maps roles to the model identities the config's price table is keyed by)."""
    tokens = sum(u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in usage.values())
    cost = 0.0
    for role, counts in usage.items():
        price = role_price(config, models, role)
        if price is None:
            return tokens, None
        cost += cost_of(price, counts.get("input_tokens", 0), counts.get("output_tokens", 0))
    return tokens, cost


def budget_stop(
    config: DRPOConfig, models: Mapping[str, str], usage: Mapping[str, Mapping[str, int]]
) -> str | None:
    """Why the budget stops the search (starting with one of ``BUDGET_STOPS``), or None."""
    tokens, cost = spent(config, models, usage)
    if config.max_tokens_budget is not None and tokens >= config.max_tokens_budget:
        return f"token budget reached ({tokens:,} of {config.max_tokens_budget:,})"
    if config.max_cost is not None and cost is not None and cost >= config.max_cost:
        return f"cost budget reached ({cost:.4f} of {config.max_cost})"
    return None
