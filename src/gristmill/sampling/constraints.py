"""Constraint checks used by rejection sampling (the redraw loop lives in ``sampling.batch``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from gristmill.config.samplers import ColumnInequality, ConstraintModel, ScalarInequality
from gristmill.errors import ConfigError, ConstraintError

_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
# Columns whose values have no order, so an inequality on them is a config mistake.
_UNORDERED_SAMPLERS = frozenset({"person", "uuid", "subcategory"})
_KIND_NAMES = {"number": "numbers", "datetime": "datetimes", "str": "strings", "other": "values without order"}


def violation_mask(constraint: ConstraintModel, values: Mapping[str, Any]) -> np.ndarray:
    """Boolean mask of the rows that break ``constraint`` (NaN compares as a violation)."""
    lhs = np.asarray(values[constraint.target_column])
    if isinstance(constraint, ScalarInequality):
        rhs: Any = constraint.rhs
    else:
        rhs = np.asarray(values[constraint.rhs_column])
    try:
        holds = _COMPARE[constraint.operator](lhs, rhs)
    except TypeError as exc:  # numpy's UFuncTypeError: e.g. a datetime compared with a number
        raise ConfigError(f"constraint '{constraint.describe()}' cannot compare {lhs.dtype} values with "
                          f"{getattr(rhs, 'dtype', type(rhs).__name__)}: {exc}") from exc
    return ~np.asarray(holds, dtype=bool)


def check_constraints(constraints: Sequence[ConstraintModel], sampler_types: Mapping[str, str],
                      known_columns: Collection[str], *, value_kinds: Mapping[str, str] | None = None) -> None:
    """Static checks: targets are orderable sampler columns, right-hand columns exist, and (with
    ``value_kinds``: sampler column -> 'number', 'datetime', 'str' or 'other') both sides compare."""
    kinds = value_kinds or {}
    for constraint in constraints:
        where = f"constraint '{constraint.describe()}'"
        target_type = sampler_types.get(constraint.target_column)
        if target_type is None:
            raise ConfigError(f"{where}: target_column {constraint.target_column!r} is not a sampler column; "
                              "only sampler columns can be redrawn, so put the sampled column on the left")
        if target_type in _UNORDERED_SAMPLERS:
            raise ConfigError(f"{where}: {target_type} values have no order; constrain a numeric or "
                              "datetime sampler column instead")
        target_kind = kinds.get(constraint.target_column)
        if isinstance(constraint, ScalarInequality) and target_kind not in (None, "number"):
            raise ConfigError(f"{where}: {constraint.target_column!r} holds {_KIND_NAMES[target_kind]}, which "
                              "cannot be compared with a number")
        if isinstance(constraint, ColumnInequality):
            rhs = constraint.rhs_column
            if rhs not in sampler_types and rhs not in known_columns:
                raise ConfigError(f"{where}: rhs_column {rhs!r} is not a sampler or seed column (constraints are "
                                  "enforced while the samplers are drawn, before other columns exist)")
            if sampler_types.get(rhs) in _UNORDERED_SAMPLERS:
                raise ConfigError(f"{where}: rhs_column {rhs!r} is a {sampler_types[rhs]} column, whose values "
                                  "have no order")
            rhs_kind = kinds.get(rhs)
            if target_kind is not None and rhs_kind is not None and target_kind != rhs_kind:
                raise ConfigError(f"{where}: {constraint.target_column!r} holds {_KIND_NAMES[target_kind]} but "
                                  f"{rhs!r} holds {_KIND_NAMES[rhs_kind]}; they cannot be compared")


def unsatisfied_error(failures: Sequence[tuple[ConstraintModel, int]], *, num_rows: int,
                      rounds: int) -> ConstraintError:
    """The error for constraints still broken after the last rejection round."""
    parts = [f"'{constraint.describe()}' ({count} of {num_rows} rows)" for constraint, count in failures]
    targets = sorted({constraint.target_column for constraint, _ in failures})
    return ConstraintError(
        f"constraints still violated after {rounds} rejection-sampling rounds: {', '.join(parts)}. "
        f"Relax the constraint, or change the params of {', '.join(repr(t) for t in targets)} so that "
        "most draws satisfy it.")
