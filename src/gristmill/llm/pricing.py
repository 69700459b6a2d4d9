"""Cost from usage counters and token prices (``input_cost_per_million``, ``output_cost_per_million``
on a model config or in models.yaml).

Prices are optional: a model without one has no cost, and its usage is shown as requests and
tokens only. A price never enters a fingerprint, so changing one pays for nothing again.

>>> prices = {"default": ModelPrice(input_cost_per_million=0.5, output_cost_per_million=1.5)}
>>> total_cost({"default": {"input_tokens": 2_000_000, "output_tokens": 1_000_000}}, prices)
2.5
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from gristmill.config.models import ModelConfig, ModelPrice

if TYPE_CHECKING:
    from gristmill.llm.runtime import LLMRuntime

Usage = Mapping[str, Mapping[str, int]]


def model_prices(llm: LLMRuntime, aliases: Iterable[str], extra_models: Iterable[ModelConfig] = ()
                 ) -> dict[str, ModelPrice]:
    """The prices of the models ``aliases`` resolve to (as a run resolves them), priced ones only."""
    extra = list(extra_models)
    prices: dict[str, ModelPrice] = {}
    for alias in sorted(set(aliases)):
        price = llm.registry.resolve(alias, extra).model.price()
        if price is not None:
            prices[alias] = price
    return prices


def usage_cost(usage: Usage, prices: Mapping[str, ModelPrice]) -> dict[str, float]:
    """Cost by model alias of ``usage`` (alias -> counters); models without a price are left out."""
    return {alias: price.cost(usage.get(alias, {})) for alias, price in prices.items()}


def total_cost(usage: Usage, prices: Mapping[str, ModelPrice]) -> float | None:
    """The cost of ``usage`` over every priced model, None when no model used has a price."""
    priced = {alias: cost for alias, cost in usage_cost(usage, prices).items() if alias in usage}
    return sum(priced.values()) if priced else None


def format_cost(value: float | None) -> str:
    """A cost for people: '0.0123' below one unit (cents matter), '12.35' above; '-' when unknown."""
    if value is None:
        return "-"
    return f"{value:.4f}" if value < 1 else f"{value:,.2f}"
