"""Vectorised draw functions, one per sampler type: one numpy call per column per batch.

Every function has the signature ``draw(params, n, rng, inputs) -> array`` where ``inputs``
holds the columns the sampler reads (already cut to the same ``n`` rows).

Output dtypes (the contract with the engine):

===================================  =================================================
sampler                              array
===================================  =================================================
uuid                                 numpy ``object`` array of ``str``
category, subcategory                ``object`` of ``str`` when the values are strings;
                                     ``bool`` for booleans; ``int64`` for ints,
                                     ``float64`` when any number is a float (config
                                     validation rejects other mixes)
uniform                              ``float64`` (rounded to ``decimal_places``); ``int64`` if integer
gaussian, bernoulli_mixture          ``float64``
bernoulli                            ``bool``
binomial, poisson                    ``int64``
scipy                                ``float64`` for continuous, ``int64`` for discrete distributions
datetime, timedelta                  ``datetime64[s]`` (a parquet timestamp)
person                               ``pyarrow.StructArray`` (see ``sampling.person``)
===================================  =================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gristmill.config.samplers import (
    NUMPY_DISTRIBUTIONS,
    SCIPY_HINT,
    BernoulliMixtureParams,
    BernoulliParams,
    BinomialParams,
    CategoryParams,
    DatetimeParams,
    GaussianParams,
    PoissonParams,
    SamplerParams,
    ScipyParams,
    SubcategoryParams,
    TimedeltaParams,
    UniformParams,
    UUIDParams,
    subcategory_key,
)
from gristmill.errors import ConfigError
from gristmill.sampling.ids import hex_ids
from gristmill.sampling.person import draw_person

DrawFunction = Callable[[Any, int, np.random.Generator, Mapping[str, Any]], Any]


def _round(values: np.ndarray, decimal_places: int | None) -> np.ndarray:
    return values if decimal_places is None else np.round(values, decimal_places)


def draw_uuid(params: UUIDParams, n: int, rng: np.random.Generator,
              inputs: Mapping[str, Any]) -> np.ndarray:
    """Hex ids built from seeded random bytes: UUID4 layout, or 12 hex digits with ``short_form``."""
    text = hex_ids(rng, n, short_form=params.short_form, uppercase=params.uppercase)
    return np.add(params.prefix, text) if params.prefix else text


def value_array(values: list[Any]) -> np.ndarray:
    """The values as a numpy array of the dtype the module docstring promises for category."""
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array(values, dtype=object)


def draw_category(params: CategoryParams, n: int, rng: np.random.Generator,
                  inputs: Mapping[str, Any]) -> np.ndarray:
    """One of ``values`` per row, weighted when ``weights`` is given."""
    pool = value_array(params.values)
    if params.weights is None:
        return pool[rng.integers(0, len(pool), size=n)]
    weights = np.asarray(params.weights, dtype=np.float64)
    return pool[rng.choice(len(pool), size=n, p=weights / weights.sum())]


def draw_subcategory(params: SubcategoryParams, n: int, rng: np.random.Generator,
                     inputs: Mapping[str, Any]) -> np.ndarray:
    """A value from the list of the row's parent category: one uniform draw, one gather.

    The lists are laid end to end in one pool; each distinct parent value is matched to its key
    once (``config.samplers.subcategory_key``), then every row indexes the pool at its list's
    offset plus ``floor(u * length)``.
    """
    parents = np.asarray(inputs[params.category])
    choice = rng.random(n)
    keys = list(params.values)
    lengths = np.array([len(options) for options in params.values.values()], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    pool = value_array([v for options in params.values.values() for v in options])
    import pandas as pd  # factorize hashes: several times faster than np.unique's sort on strings

    inverse, distinct = pd.factorize(parents)
    matched = [subcategory_key(value, keys) for value in distinct]
    missing = sorted(str(value) for value, key in zip(distinct, matched, strict=True) if key is None)
    if missing:
        raise ConfigError(f"subcategory of {params.category!r}: no values given for parent values {missing}; "
                          "add them to the subcategory's values")
    positions = {key: i for i, key in enumerate(keys)}
    key_index = np.array([positions.get(key or "", 0) for key in matched], dtype=np.int64)[inverse]
    return np.asarray(pool[offsets[key_index] + (choice * lengths[key_index]).astype(np.int64)])


def draw_uniform(params: UniformParams, n: int, rng: np.random.Generator,
                 inputs: Mapping[str, Any]) -> np.ndarray:
    """Uniform floats in [low, high), or int64 in [low, high] with ``integer``."""
    if params.integer:
        low, high = int(np.ceil(params.low)), int(np.floor(params.high))
        return rng.integers(low, high, size=n, endpoint=True, dtype=np.int64)
    return _round(rng.uniform(params.low, params.high, size=n), params.decimal_places)


def draw_gaussian(params: GaussianParams, n: int, rng: np.random.Generator,
                  inputs: Mapping[str, Any]) -> np.ndarray:
    """Normal draws, rounded when asked."""
    return _round(rng.normal(params.mean, params.stddev, size=n), params.decimal_places)


def draw_bernoulli(params: BernoulliParams, n: int, rng: np.random.Generator,
                   inputs: Mapping[str, Any]) -> np.ndarray:
    """True with probability p."""
    return rng.random(n) < params.p


def draw_distribution(name: str, dist_params: Mapping[str, float], n: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of a numpy Generator distribution, or of a scipy.stats one for any other name."""
    if name in NUMPY_DISTRIBUTIONS:
        return np.asarray(getattr(rng, name)(**dist_params, size=n))
    return np.asarray(_scipy_distribution(name).rvs(**dist_params, size=n, random_state=rng))


def _scipy_distribution(name: str) -> Any:
    try:
        import scipy.stats
    except ImportError as exc:
        raise ConfigError(f"the scipy distribution {name!r} needs scipy; {SCIPY_HINT}") from exc
    dist = getattr(scipy.stats, name, None)
    if dist is None:
        raise ConfigError(f"unknown scipy.stats distribution {name!r}")
    return dist


def draw_bernoulli_mixture(params: BernoulliMixtureParams, n: int, rng: np.random.Generator,
                           inputs: Mapping[str, Any]) -> np.ndarray:
    """A distribution draw with probability p, else 0.0 (e.g. spend: often nothing, else lognormal)."""
    hit = rng.random(n) < params.p
    values = np.asarray(draw_distribution(params.dist_name, params.dist_params, n, rng), dtype=np.float64)
    return np.where(hit, values, 0.0)


def draw_binomial(params: BinomialParams, n: int, rng: np.random.Generator,
                  inputs: Mapping[str, Any]) -> np.ndarray:
    """Successes in ``params.n`` trials."""
    return rng.binomial(params.n, params.p, size=n).astype(np.int64, copy=False)


def draw_poisson(params: PoissonParams, n: int, rng: np.random.Generator,
                 inputs: Mapping[str, Any]) -> np.ndarray:
    """Poisson counts."""
    return rng.poisson(params.mean, size=n).astype(np.int64, copy=False)


def draw_scipy(params: ScipyParams, n: int, rng: np.random.Generator,
               inputs: Mapping[str, Any]) -> np.ndarray:
    """``scipy.stats.<dist_name>.rvs(**dist_params, size=n, random_state=rng)``."""
    dist = _scipy_distribution(params.dist_name)
    values = np.asarray(dist.rvs(**params.dist_params, size=n, random_state=rng))
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    return _round(values.astype(np.float64, copy=False), params.decimal_places)


def draw_datetime(params: DatetimeParams, n: int, rng: np.random.Generator,
                  inputs: Mapping[str, Any]) -> np.ndarray:
    """Uniform whole ``unit``s between start and end (both inclusive), as datetime64[s]."""
    unit = params.unit
    low = np.datetime64(params.start, unit).astype(np.int64)
    high = np.datetime64(params.end, unit).astype(np.int64)
    ticks = rng.integers(low, high, size=n, endpoint=True, dtype=np.int64)
    return ticks.astype(f"datetime64[{unit}]").astype("datetime64[s]")


def draw_timedelta(params: TimedeltaParams, n: int, rng: np.random.Generator,
                   inputs: Mapping[str, Any]) -> np.ndarray:
    """The reference datetime plus a whole number of units in [dt_min, dt_max]."""
    try:
        reference = np.asarray(inputs[params.reference_column_name]).astype("datetime64[s]")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"timedelta reference column {params.reference_column_name!r} is not a datetime "
                          f"column: {exc}") from exc
    offsets = rng.integers(params.dt_min, params.dt_max, size=n, endpoint=True, dtype=np.int64)
    return np.asarray(reference + offsets.astype(f"timedelta64[{params.unit}]"))


DRAW_FUNCTIONS: dict[str, DrawFunction] = {
    "uuid": draw_uuid,
    "category": draw_category,
    "subcategory": draw_subcategory,
    "uniform": draw_uniform,
    "gaussian": draw_gaussian,
    "bernoulli": draw_bernoulli,
    "bernoulli_mixture": draw_bernoulli_mixture,
    "binomial": draw_binomial,
    "poisson": draw_poisson,
    "scipy": draw_scipy,
    "datetime": draw_datetime,
    "timedelta": draw_timedelta,
    "person": draw_person,
}


def draw(sampler_type: str, params: SamplerParams, n: int, rng: np.random.Generator,
         inputs: Mapping[str, Any]) -> Any:
    """Draw ``n`` values of one sampler type."""
    function = DRAW_FUNCTIONS.get(sampler_type)
    if function is None:
        raise ConfigError(f"no draw function for sampler_type {sampler_type!r}; "
                          f"known: {', '.join(sorted(DRAW_FUNCTIONS))}")
    return function(params, n, rng, inputs)
