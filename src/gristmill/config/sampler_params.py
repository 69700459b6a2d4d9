"""Sampler params: one pydantic model per ``sampler_type``, registered in :data:`SAMPLER_PARAMS`.

``SamplerColumn.params`` is validated by the model registered for its ``sampler_type``; add a
sampler type with :func:`register_sampler_params` (and a draw function in ``sampling.samplers``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, Field, field_validator, model_validator

from gristmill.config.base import ConfigModel
from gristmill.config.distributions import check_distribution, check_scipy_distribution

SAMPLER_PARAMS: dict[str, type[SamplerParams]] = {}
SamplerParamsT = TypeVar("SamplerParamsT", bound="SamplerParams")

Scalar = str | int | float | bool

# Bounds that keep draws inside what numpy and the output types can hold, so absurd params fail
# when the config is read instead of as an OverflowError in the middle of a run.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DECIMAL_PLACES = 15  # a float64 has 15-17 significant digits; np.round(x, 400) gives NaN
MAX_POISSON_MEAN = 1e18  # numpy rejects lam above about 9.2e18
MAX_AGE = 120
MAX_TIMEDELTA_SECONDS = 10_000 * 366 * 86_400  # offsets of up to 10,000 years
_UNIT_SECONDS = {"D": 86_400, "h": 3_600, "m": 60, "s": 1}

DecimalPlaces = Annotated[int, Field(ge=0, le=MAX_DECIMAL_PLACES)]

# The fields of a person record, in struct order. The first ten are gristmill's original ones; the
# rest were appended for users of the reference tool, so the original fields keep their values.
# A person column's fingerprint includes this list: a dataset stored with other fields starts fresh
# instead of mixing two struct shapes.
PERSON_FIELDS = ("first_name", "last_name", "sex", "age", "birth_date", "city", "state", "zipcode",
                 "email_address", "phone_number",
                 "uuid", "locale", "street_number", "street_name", "street_address", "postcode", "country",
                 "marital_status", "education_level", "bachelors_field", "occupation")


def value_kind(value: Any) -> str:
    """'str', 'bool' or 'number': the kinds of value a category may not mix."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str"


def _check_one_kind(values: Sequence[Any], what: str) -> None:
    kinds = sorted({value_kind(v) for v in values})
    if len(kinds) > 1:
        raise ValueError(f"{what} mix {' and '.join(k + 's' for k in kinds)} ({list(values)[:6]}); give "
                         "values of one type, e.g. quote every value to make them all strings")


def subcategory_key(value: Any, keys: Sequence[str]) -> str | None:
    """The key of a subcategory's ``values`` that a parent value selects, or None.

    ``str(value)`` first; then, for a number, a key naming the same number ('1' or '1.0' for
    1.0); for a boolean, 'true'/'false' in any case.
    """
    if hasattr(value, "item") and not isinstance(value, str):  # a numpy scalar
        value = value.item()
    text = str(value)
    if text in keys:
        return text
    if isinstance(value, bool):
        return next((key for key in keys if key.strip().lower() == text.lower()), None)
    if isinstance(value, int | float):
        for key in keys:
            try:
                if float(key) == value:
                    return key
            except ValueError:
                continue
    return None


def register_sampler_params(name: str) -> Callable[[type[SamplerParamsT]], type[SamplerParamsT]]:
    """Class decorator: register a params model under a ``sampler_type`` name."""

    def decorate(cls: type[SamplerParamsT]) -> type[SamplerParamsT]:
        SAMPLER_PARAMS[name] = cls
        return cls

    return decorate


class SamplerParams(ConfigModel):
    """Base of every sampler's params. Infinities and NaN are never valid numbers here."""

    model_config = ConfigDict(allow_inf_nan=False)

    def referenced_columns(self) -> set[str]:
        """Other columns this sampler reads (a subcategory's parent, a timedelta's reference)."""
        return set()


@register_sampler_params("uuid")
class UUIDParams(SamplerParams):
    """Random identifiers from the seeded stream (never ``uuid.uuid4``, so runs are reproducible)."""

    prefix: str = Field(default="", description="Text put before every id, e.g. 'user-'.")
    short_form: bool = Field(default=False, description=(
        "12 hex characters (48 random bits) instead of the 36-character UUID4 form. 12, not 8: "
        "8 hex characters (32 bits) already collide about once in 100k rows."))
    uppercase: bool = Field(default=False, description="Upper-case hex digits.")


@register_sampler_params("category")
class CategoryParams(SamplerParams):
    """One of ``values``, uniformly or by ``weights``."""

    values: list[Scalar] = Field(min_length=1, description="The categories to draw from.")
    weights: list[float] | None = Field(default=None, description=(
        "Relative weights, one per value (normalised); uniform when omitted."))

    @model_validator(mode="after")
    def _check_weights(self) -> CategoryParams:
        if self.weights is None:
            return self
        if len(self.weights) != len(self.values):
            raise ValueError(f"weights has {len(self.weights)} entries but values has {len(self.values)}; "
                             "give one weight per value")
        if any(w < 0 for w in self.weights) or not 0 < sum(self.weights) < math.inf:
            raise ValueError("weights must be non-negative with a positive, finite sum")
        return self

    @field_validator("values")
    @classmethod
    def _check_kinds(cls, value: list[Scalar]) -> list[Scalar]:
        _check_one_kind(value, "values")
        return value

    def value_kind(self) -> str:
        """'str', 'bool' or 'number'."""
        return value_kind(self.values[0])


@register_sampler_params("subcategory")
class SubcategoryParams(SamplerParams):
    """A value chosen uniformly from the list that belongs to the row's parent category."""

    category: str = Field(description="Name of the parent category sampler column.")
    values: dict[str, list[Scalar]] = Field(description=(
        "Parent value (as a string: '1.0' or '1' for 1.0, 'True' for true) -> the subcategories "
        "allowed under it."))

    @field_validator("values", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        # YAML reads ``1:``, ``1.5:`` and ``true:`` as non-string keys; keys are strings.
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, options in value.items():
            text = str(key)
            if text in out:
                raise ValueError(f"values has the key {text!r} twice (as {key!r} and as {text!r})")
            out[text] = options
        return out

    @field_validator("values")
    @classmethod
    def _check_values(cls, value: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        if not value:
            raise ValueError("values must map at least one parent value to subcategories")
        empty = [k for k, v in value.items() if not v]
        if empty:
            raise ValueError(f"values has empty subcategory lists for parent values {empty}")
        _check_one_kind([v for options in value.values() for v in options], "subcategory values")
        return value

    def value_kind(self) -> str:
        """'str', 'bool' or 'number'."""
        return value_kind(next(iter(self.values.values()))[0])

    def referenced_columns(self) -> set[str]:
        return {self.category}


@register_sampler_params("uniform")
class UniformParams(SamplerParams):
    """Uniform over [low, high): floats, or integers in [low, high] with ``integer=True``."""

    low: float = Field(description="Lower bound.")
    high: float = Field(description="Upper bound.")
    decimal_places: DecimalPlaces | None = Field(default=None, description=(
        f"Round floats to this many places (0 to {MAX_DECIMAL_PLACES})."))
    integer: bool = Field(default=False, description="Draw int64 values in [low, high], both inclusive.")

    @model_validator(mode="after")
    def _check_bounds(self) -> UniformParams:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.integer:
            if _ceil(self.low) > _floor(self.high):
                raise ValueError(f"no integer lies in [low, high] = [{self.low}, {self.high}]")
            if _ceil(self.low) < INT64_MIN or _floor(self.high) > INT64_MAX:
                raise ValueError(f"integer bounds [{self.low}, {self.high}] must lie within int64 "
                                 "(about -9.2e18 to 9.2e18)")
        elif not math.isfinite(self.high - self.low):
            raise ValueError(f"high - low ({self.high} - {self.low}) is too large for a float")
        return self


def _ceil(x: float) -> int:
    return -int(-x // 1)


def _floor(x: float) -> int:
    return int(x // 1)


@register_sampler_params("gaussian")
class GaussianParams(SamplerParams):
    """Normal distribution."""

    mean: float = Field(description="Mean.")
    stddev: float = Field(gt=0, description="Standard deviation, > 0.")
    decimal_places: DecimalPlaces | None = Field(default=None, description=(
        f"Round to this many places (0 to {MAX_DECIMAL_PLACES})."))


@register_sampler_params("bernoulli")
class BernoulliParams(SamplerParams):
    """True with probability ``p`` (bool column)."""

    p: float = Field(ge=0, le=1, description="Probability of True, in [0, 1].")


@register_sampler_params("bernoulli_mixture")
class BernoulliMixtureParams(SamplerParams):
    """With probability ``p`` a draw from ``dist_name(**dist_params)``, else 0.0."""

    p: float = Field(ge=0, le=1, description="Probability of drawing from the distribution, in [0, 1].")
    dist_name: str = Field(description=(
        "A numpy Generator distribution (normal, lognormal, exponential, gamma, ...) or, for any other "
        "name, a scipy.stats distribution (norm, expon, lognorm, ...; needs gristmill[scipy])."))
    dist_params: dict[str, float] = Field(default_factory=dict,
                                          description="Keyword arguments of the distribution.")

    @model_validator(mode="after")
    def _check_dist(self) -> BernoulliMixtureParams:
        check_distribution(self.dist_name, self.dist_params)
        return self


@register_sampler_params("binomial")
class BinomialParams(SamplerParams):
    """Number of successes in ``n`` trials (int64)."""

    n: int = Field(ge=0, le=INT64_MAX, description="Number of trials, >= 0 (an int64).")
    p: float = Field(ge=0, le=1, description="Success probability, in [0, 1].")


@register_sampler_params("poisson")
class PoissonParams(SamplerParams):
    """Poisson counts (int64)."""

    mean: float = Field(ge=0, le=MAX_POISSON_MEAN, description=(
        f"Expected count (lambda), from 0 to {MAX_POISSON_MEAN:g}."))


@register_sampler_params("scipy")
class ScipyParams(SamplerParams):
    """Any ``scipy.stats`` distribution, drawn by ``rvs(size=n, random_state=rng)``; needs the scipy extra."""

    dist_name: str = Field(description="Name in scipy.stats, e.g. 'beta', 'lognorm', 'poisson'.")
    dist_params: dict[str, float] = Field(default_factory=dict, description="Shape, loc and scale arguments.")
    decimal_places: DecimalPlaces | None = Field(default=None, description=(
        f"Round to this many places (0 to {MAX_DECIMAL_PLACES})."))

    @model_validator(mode="after")
    def _check_dist(self) -> ScipyParams:
        check_scipy_distribution(self.dist_name, self.dist_params)
        return self


DatetimeUnit = Literal["Y", "M", "D", "h", "m", "s"]


@register_sampler_params("datetime")
class DatetimeParams(SamplerParams):
    """Uniform instants in [start, end] in whole ``unit``s, returned as ``datetime64[s]`` (parquet timestamp).

    Both bounds are truncated to the unit: ``unit="M"`` gives first-of-month midnights.
    """

    start: str = Field(description="Earliest value, ISO 8601 ('2024-01-01' or '2024-01-01T08:00:00').")
    end: str = Field(description="Latest value, ISO 8601, inclusive.")
    unit: DatetimeUnit = Field(default="D", description="Resolution: Y, M, D, h, m or s.")

    @model_validator(mode="after")
    def _check_range(self) -> DatetimeParams:
        import numpy as np

        try:
            start, end = np.datetime64(self.start, "s"), np.datetime64(self.end, "s")
        except ValueError as exc:
            raise ValueError(f"start and end must be ISO 8601 dates or datetimes: {exc}") from exc
        if start > end:
            raise ValueError(f"start ({self.start}) must not be after end ({self.end})")
        return self


@register_sampler_params("timedelta")
class TimedeltaParams(SamplerParams):
    """A datetime column plus a random whole number of units in [dt_min, dt_max] (both inclusive)."""

    dt_min: int = Field(description="Smallest offset, in units (may be negative).")
    dt_max: int = Field(description="Largest offset, in units, inclusive.")
    unit: Literal["D", "h", "m", "s"] = Field(default="D", description="Unit of the offsets.")
    reference_column_name: str = Field(description="The datetime column the offset is added to.")

    @model_validator(mode="after")
    def _check_range(self) -> TimedeltaParams:
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min ({self.dt_min}) must not exceed dt_max ({self.dt_max})")
        limit = MAX_TIMEDELTA_SECONDS // _UNIT_SECONDS[self.unit]
        if max(abs(self.dt_min), abs(self.dt_max)) > limit:
            raise ValueError(f"offsets must lie within 10,000 years (|dt_min|, |dt_max| <= {limit} "
                             f"for unit {self.unit!r})")
        return self

    def referenced_columns(self) -> set[str]:
        return {self.reference_column_name}


@register_sampler_params("person")
class PersonParams(SamplerParams):
    """A synthetic person record (struct column) drawn from Faker-built pools of the locale.

    Fields (:data:`PERSON_FIELDS`): first_name, last_name, sex, age, birth_date, city, state,
    zipcode, email_address, phone_number, uuid, locale, street_number, street_name,
    street_address, postcode (the zipcode again, under the reference tool's name), country (of
    the locale), marital_status, education_level, bachelors_field, occupation. Use in templates as
    ``{{ person.first_name }}``.
    """

    locale: str = Field(default="en_US", description="Faker locale of names and places.")
    sex: Literal["Male", "Female"] | None = Field(default=None, description="Only this sex; both if omitted.")
    age_range: list[int] = Field(default_factory=lambda: [18, 114], description=(
        f"[min, max] age, inclusive, within 0 to {MAX_AGE}."))
    city: str | list[str] | None = Field(default=None, description=(
        "Only these cities (drawn uniformly). Faker's pools do not tie cities to states, so state and "
        "zipcode stay drawn from the locale's pool."))
    reference_date: str = Field(default="2025-01-01", description=(
        "Date ages are counted at, ISO 8601 (YYYY-MM-DD); birth dates derive from it (fixed, so data "
        "never depends on today)."))

    @field_validator("locale")
    @classmethod
    def _check_locale(cls, value: str) -> str:
        from faker.config import AVAILABLE_LOCALES

        if value not in AVAILABLE_LOCALES:
            raise ValueError(f"unknown Faker locale {value!r}; e.g. en_US, en_GB, de_DE, fr_FR, ja_JP")
        return value

    @field_validator("age_range")
    @classmethod
    def _check_ages(cls, value: list[int]) -> list[int]:
        if len(value) != 2 or not 0 <= value[0] <= value[1] <= MAX_AGE:
            raise ValueError(f"age_range must be [min, max] with 0 <= min <= max <= {MAX_AGE}, got {value}")
        return value

    @field_validator("reference_date")
    @classmethod
    def _check_reference_date(cls, value: str) -> str:
        try:
            date = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"reference_date must be an ISO 8601 date such as '2025-01-01', got {value!r}") from None
        if date.year <= MAX_AGE + 1:
            raise ValueError(f"reference_date {value!r} is too early: birth dates up to {MAX_AGE} years "
                             "before it must exist")
        return date.isoformat()

    @field_validator("city")
    @classmethod
    def _check_city(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("city must name at least one city, or be omitted")
        return value
