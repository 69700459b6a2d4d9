"""Model providers and model configs: which endpoint serves which model, with what parameters.

Secrets (API keys), timeouts and concurrency never enter a fingerprint nor ``config.json``:
see ``fingerprint_exclude`` on each model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from gristmill.config.base import ConfigModel, non_empty_alias
from gristmill.config.distributions import NUMPY_DISTRIBUTIONS, check_distribution


class ModelProvider(ConfigModel):
    """An endpoint that serves models: OpenAI-compatible HTTP, or the embedded local model."""

    # A validation error must not quote what it was given: that may be a key (api_key=[key],
    # extra_headers={"X": [token]}, a misspelt 'apikey: sk-...'). This holds when a provider is
    # validated on its own; the registry also summarises errors without their inputs.
    model_config = ConfigDict(hide_input_in_errors=True)

    name: str = Field(description="Provider name that model configs refer to.")
    endpoint: str = Field(default="", description="Base URL, e.g. 'https://api.openai.com/v1'; unused for local.")
    provider_type: Literal["openai", "local"] = Field(default="openai", description="Protocol of the endpoint.")
    # repr=False: a literal key or an auth header must not show up in reprs, logs or tracebacks.
    api_key: str | None = Field(
        default=None, repr=False,
        description="'$ENV_VAR' or '${ENV_VAR}' (read at request time; the name must be letters, digits "
                    "and '_', not starting with a digit), 'literal:<key>' for a key that looks like "
                    "'$NAME', or the key itself (anything else, '$sk-...' included).")
    extra_headers: dict[str, str] = Field(default_factory=dict, repr=False,
                                          description="Headers added to every request.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Fields merged into every request body.")
    structured_output: Literal["json_schema", "json_object", "prompt"] = Field(
        default="json_schema",
        description="How JSON output is asked for: OpenAI 'json_schema' response format, 'json_object' "
                    "with the schema attached (llama.cpp, vLLM), or 'prompt' (instruction only).")
    cache_namespace: str | None = Field(
        default=None,
        description="Extra part of the response-cache key. Answers are cached by provider name and "
                    "model name, not by endpoint, so moving a server keeps its answers; set this when "
                    "the provider now serves a different model under the same name, to stop reusing "
                    "the old answers.")

    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset({"api_key", "extra_headers", "endpoint"})

    @field_validator("extra_body")
    @classmethod
    def _check_extra_body(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value, "extra_body")
        return value

    def fingerprint_payload(self) -> Any:
        return self.model_dump(mode="json", exclude=set(self.fingerprint_exclude))


class ParameterDistribution(ConfigModel):
    """A sampling parameter drawn per row, e.g. ``{distribution: uniform, params: {low: 0.5, high: 0.9}}``.

    The engine draws one value per row from a stream seeded by (run seed, batch index, column,
    parameter), so a resumed or rerun batch sends the same bodies (and hits the response cache).
    Draws are rounded to 4 decimals and clipped to the parameter's range (:data:`PARAMETER_RANGES`).
    """

    distribution: str = Field(description=(
        "A numpy Generator distribution: uniform, normal, beta, triangular, ... (scipy.stats names "
        "are not accepted here)."))
    params: dict[str, float] = Field(default_factory=dict,
                                     description="Keyword arguments of the distribution, e.g. {low: 0.5, high: 0.9}.")

    @model_validator(mode="after")
    def _check(self) -> ParameterDistribution:
        if self.distribution not in NUMPY_DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {self.distribution!r} for a sampling parameter; use one of "
                             f"{', '.join(sorted(NUMPY_DISTRIBUTIONS))}")
        check_distribution(self.distribution, self.params)
        return self


# The range a drawn value is clipped to: what the endpoint accepts (top_p must stay above 0).
PARAMETER_RANGES: dict[str, tuple[float, float]] = {"temperature": (0.0, 2.0), "top_p": (0.001, 1.0)}


def _number_or_distribution(value: Any) -> str:
    # One branch per input, so an error names what is wrong with the number or the spec, not both.
    return "distribution" if isinstance(value, dict | ParameterDistribution) else "number"


Temperature = Annotated[Annotated[Annotated[float, Field(ge=0, le=2)], Tag("number")]
                        | Annotated[ParameterDistribution, Tag("distribution")], Discriminator(_number_or_distribution)]
TopP = Annotated[Annotated[Annotated[float, Field(gt=0, le=1)], Tag("number")]
                 | Annotated[ParameterDistribution, Tag("distribution")], Discriminator(_number_or_distribution)]


class InferenceParameters(ConfigModel):
    """Sampling parameters sent with every request of a model. ``temperature`` and ``top_p`` may
    be a number or a :class:`ParameterDistribution` drawn per row."""

    temperature: Temperature | None = Field(
        default=None, description="Sampling temperature, or a distribution drawn per row.")
    top_p: TopP | None = Field(
        default=None, description="Nucleus sampling mass, or a distribution drawn per row.")
    max_tokens: int | None = Field(default=None, ge=1, description="Upper bound on generated tokens.")
    seed: int | None = Field(default=None, description="Endpoint-side sampling seed, where supported.")
    stop: list[str] | None = Field(default=None, description="Stop sequences.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Other body fields sent as-is.")

    @field_validator("extra")
    @classmethod
    def _check_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value, "extra")
        return value

    def fixed_params(self) -> dict[str, Any]:
        """The body fields every request carries: the set parameters that are plain values (in field
        order), then ``extra``. Parameters drawn per row are left out (see :meth:`drawn_params`).

        >>> InferenceParameters(temperature=0.5, max_tokens=9, extra={"n": 1}).fixed_params()
        {'temperature': 0.5, 'max_tokens': 9, 'n': 1}
        """
        params: dict[str, Any] = {}
        for name in ("temperature", "top_p", "max_tokens", "seed", "stop"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, ParameterDistribution):
                params[name] = value
        params.update(self.extra)
        return params

    def drawn_params(self) -> dict[str, ParameterDistribution]:
        """The parameters drawn per row, by body field name (empty for plain numbers)."""
        return {name: value for name in PARAMETER_RANGES
                if isinstance(value := getattr(self, name), ParameterDistribution)}


class ModelConfig(ConfigModel):
    """A model by alias: which provider, which model name, which parameters."""

    alias: str = Field(description="Name that columns use in 'model_alias'.")
    model: str = Field(description="Model name as the endpoint knows it.")
    provider: str = Field(description="Name of a ModelProvider.")
    generation_type: Literal["chat", "embedding", "image"] = Field(
        default="chat", description="What the model does: 'chat' completions (LLM columns), 'embedding' "
                                    "vectors (embedding columns, the provider's /embeddings endpoint) or 'image' "
                                    "(image columns, the provider's /images/generations endpoint).")
    inference_parameters: InferenceParameters = Field(default_factory=InferenceParameters,
                                                      description="Sampling parameters.")
    max_parallel_requests: int = Field(default=16, ge=1, description="Concurrency cap per (provider, model).")
    timeout: float = Field(default=120.0, gt=0, description="Seconds before a request is abandoned and retried.")
    max_retries: int = Field(default=6, ge=0,
                             description="Retries of a request after 5xx answers, timeouts or connection errors.")
    retry_backoff: float = Field(default=0.5, ge=0,
                                 description="Base seconds of the exponential backoff (with jitter) between retries.")
    max_rate_limit_wait: float = Field(default=600.0, ge=0,
                                       description="Seconds one request may spend waiting out 429 answers "
                                                   "before it fails with ModelRateLimitError.")
    input_cost_per_million: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="Price of one million input (prompt) tokens, in your currency; with it, runs and "
                    "bills show a cost. Never part of a fingerprint: a new price pays nothing again.")
    output_cost_per_million: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="Price of one million output (completion) tokens, in your currency.")

    # Prices change what a run costs, never what it generates.
    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset(
        {"max_parallel_requests", "timeout", "max_retries", "retry_backoff", "max_rate_limit_wait",
         "input_cost_per_million", "output_cost_per_million"})

    _check_alias = field_validator("alias")(non_empty_alias)

    def fingerprint_payload(self) -> Any:
        payload = self.model_dump(mode="json", exclude=set(self.fingerprint_exclude))
        if self.generation_type == "chat":  # added later: stored datasets keep their fingerprint
            del payload["generation_type"]
        return payload

    def price(self) -> ModelPrice | None:
        """The model's token prices, or None when neither is set (a missing one counts 0)."""
        if self.input_cost_per_million is None and self.output_cost_per_million is None:
            return None
        return ModelPrice(input_cost_per_million=self.input_cost_per_million or 0.0,
                          output_cost_per_million=self.output_cost_per_million or 0.0)


class ModelPrice(BaseModel):
    """Token prices of one model, per million tokens; stored beside a dataset's usage so its cost
    can be read back without the model files it ran with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_cost_per_million: float = Field(ge=0, allow_inf_nan=False, description="Price of 1M input tokens.")
    output_cost_per_million: float = Field(ge=0, allow_inf_nan=False, description="Price of 1M output tokens.")

    def cost(self, counters: Mapping[str, int]) -> float:
        """The cost of usage counters (``input_tokens``, ``output_tokens``; others are ignored).

        >>> ModelPrice(input_cost_per_million=1, output_cost_per_million=4).cost(
        ...     {"input_tokens": 500_000, "output_tokens": 250_000})
        1.5
        """
        return (counters.get("input_tokens", 0) * self.input_cost_per_million
                + counters.get("output_tokens", 0) * self.output_cost_per_million) / 1_000_000


def check_json_value(value: object, where: str) -> None:
    """Raise ValueError unless ``value`` is plain JSON with finite numbers: it is sent in every
    request body, where NaN or an object the encoder does not know fails only at run time."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number; JSON request bodies cannot carry it")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            check_json_value(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json_value(item, f"{where}[{index}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError(f"{where}: a {type(value).__name__} is not a JSON value")
