"""Vectorised samplers and constraints: the engine calls :func:`sample_columns` once per batch."""

from gristmill.config.sampler_params import PERSON_FIELDS
from gristmill.sampling.batch import (
    MAX_REJECTION_ROUNDS,
    condition_mask,
    draw_column,
    sample_columns,
    sampler_order,
    validate_sampler_columns,
)
from gristmill.sampling.person import person_pools
from gristmill.sampling.rng import column_rng
from gristmill.sampling.samplers import DRAW_FUNCTIONS, draw

__all__ = [
    "DRAW_FUNCTIONS",
    "MAX_REJECTION_ROUNDS",
    "PERSON_FIELDS",
    "column_rng",
    "condition_mask",
    "draw",
    "draw_column",
    "person_pools",
    "sample_columns",
    "sampler_order",
    "validate_sampler_columns",
]
