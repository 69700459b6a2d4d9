"""What models are configured, and whether each one answers (``gristmill models list | check``).

>>> [m.alias for m in describe_models(providers=[], models=[])]   # nothing configured
['default']

Both read ``providers.yaml`` / ``models.yaml`` from the gristmill home unless given paths or
lists, like ``Mill(...)``. Neither ever returns an API key.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.errors import GristmillError
from gristmill.llm.registry import ModelRegistry
from gristmill.llm.runtime import LLMRuntime

ProvidersSource = Sequence[ModelProvider] | str | Path | None
ModelsSource = Sequence[ModelConfig] | str | Path | None
CHECK_PROMPT = [{"role": "user", "content": "Reply with the single word OK."}]


@dataclass(frozen=True)
class ModelSummary:
    """One model alias as configured; ``error`` says why it cannot be used (then fields may be '-')."""

    alias: str
    provider: str
    model: str
    endpoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    max_parallel_requests: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class ModelCheck:
    """The answer of one tiny request: latency and the first words, or the exact error."""

    alias: str
    ok: bool
    detail: str
    latency_ms: float | None = None


def describe_models(*, providers: ProvidersSource = None, models: ModelsSource = None) -> list[ModelSummary]:
    """Every model alias with its provider, endpoint and non-default parameters (never the API key).

    A model that names an unknown provider is listed with ``error`` set; an unreadable file
    raises ``ConfigError``.
    """
    registry = ModelRegistry.load(providers=providers, models=models)
    summaries = []
    for alias in registry.aliases():
        try:
            resolved = registry.resolve(alias)
        except GristmillError as exc:
            model = registry.models.get(alias)
            summaries.append(ModelSummary(alias=alias, provider=model.provider if model else "-",
                                          model=model.model if model else "-", endpoint="-", error=str(exc)))
            continue
        params = resolved.model.inference_parameters.model_dump(exclude_none=True, exclude_defaults=True)
        summaries.append(ModelSummary(
            alias=alias, provider=resolved.provider.name, model=resolved.model.model,
            endpoint=resolved.provider.endpoint or f"({resolved.provider.provider_type})",
            parameters=params, max_parallel_requests=resolved.model.max_parallel_requests))
    return summaries


def check_models(aliases: Sequence[str] | None = None, *, providers: ProvidersSource = None,
                 models: ModelsSource = None) -> list[ModelCheck]:
    """Send one request per alias (all aliases by default), once, without retries, concurrently.

    An unreadable registry file raises ``ConfigError``; a model that fails is reported in its
    ``ModelCheck``, never raised.
    """
    registry = ModelRegistry.load(providers=providers, models=models)
    runtime = LLMRuntime(registry)
    names = list(aliases or registry.aliases())

    async def run_all() -> list[ModelCheck]:
        try:
            return list(await asyncio.gather(*(_check_one(runtime, alias) for alias in names)))
        finally:
            await runtime.aclose()

    return asyncio.run(run_all())


async def _check_one(runtime: LLMRuntime, alias: str) -> ModelCheck:
    try:
        runtime.check_aliases({alias})
        # One attempt, no retries: the point is to see the endpoint's own answer.
        handle = runtime.model(alias).without_retries()
        # The model's own parameters only: newer OpenAI models refuse 'max_tokens', so the check
        # sends it only when the model config does (the prompt keeps the answer tiny anyway).
        body = handle.build_body(list(CHECK_PROMPT))
        started = time.perf_counter()
        completion = await handle.complete(body, defaultdict(int))
    except GristmillError as exc:
        return ModelCheck(alias=alias, ok=False, detail=f"{type(exc).__name__}: {exc}")
    latency = (time.perf_counter() - started) * 1000
    return ModelCheck(alias=alias, ok=True, latency_ms=latency,
                      detail=f"{latency:.0f} ms, answered {completion.content.strip()[:40]!r}")
