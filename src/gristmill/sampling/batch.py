"""Generate every sampler column of one batch: ordering, conditional params, constraints.

Each column draws from ``column_rng(run_seed, batch_index, column.name)``, so a batch
depends only on (run seed, batch index, column names and params): one regenerated after a
crash is identical to the original. Constraint retries draw from extra streams
(``purpose="retry<round>"``) of the same key.
"""

from __future__ import annotations

import graphlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.config.samplers import (
    DATETIME_SAMPLERS,
    NUMPY_DISTRIBUTIONS,
    ORDERING_OPERATORS,
    SCIPY_HINT,
    BernoulliMixtureParams,
    CategoryParams,
    ColumnInequality,
    Condition,
    ConstraintModel,
    SamplerColumn,
    ScipyParams,
    SubcategoryParams,
    TimedeltaParams,
    subcategory_key,
)
from gristmill.errors import ConfigError
from gristmill.sampling.constraints import check_constraints, unsatisfied_error, violation_mask
from gristmill.sampling.rng import column_rng
from gristmill.sampling.samplers import draw, value_array

MAX_REJECTION_ROUNDS = 20
MAX_CANDIDATES_PER_ROW = 256
MAX_CANDIDATES = 4_000_000  # candidates drawn in one rejection round, all rows together
_NUMERIC_SAMPLERS = frozenset({"uniform", "gaussian", "bernoulli", "bernoulli_mixture", "binomial", "poisson",
                               "scipy"})


# ------------------------------------------------------------------------------------------- validation

def validate_sampler_columns(columns: Sequence[SamplerColumn], constraints: Sequence[ConstraintModel] = (), *,
                             known_columns: Collection[str] = frozenset()) -> None:
    """Raise ConfigError naming the column for every problem a sampler would otherwise hit mid-run.

    Checked: duplicate names, references to missing columns, subcategory parents and parent values
    without subcategories, timedelta references, condition literals a category never takes,
    scipy distributions without scipy, constraints on missing or unordered columns or on values
    that cannot be compared, and dependency cycles.

    ``known_columns`` are the other columns of the config (seed columns, and the engine may pass
    every generated output name too); sampler names among them are fine.
    """
    by_name: dict[str, SamplerColumn] = {}
    for column in columns:
        if column.name in by_name:
            raise ConfigError(f"two sampler columns are named {column.name!r}; rename one")
        by_name[column.name] = column
    available = set(by_name) | set(known_columns)
    for column in columns:
        _check_references(column, by_name, available)
        _check_condition_values(column, by_name)
        _check_distributions(column)
    check_constraints(constraints, {name: c.sampler_type for name, c in by_name.items()}, available,
                      value_kinds={name: _value_kind(c) for name, c in by_name.items()})
    sampler_order(columns)


def _value_kind(column: SamplerColumn) -> str:
    """How a sampler column's values compare: 'number', 'datetime', 'str' or 'other'."""
    if column.sampler_type in DATETIME_SAMPLERS:
        return "datetime"
    if isinstance(column.params, CategoryParams | SubcategoryParams):
        kind = column.params.value_kind()
        return "number" if kind == "bool" else kind
    if column.sampler_type in _NUMERIC_SAMPLERS:
        return "number"
    return "other"


def _category_values(column: SamplerColumn) -> list[Any]:
    """Every value a category column can take, as the Python values of its drawn array."""
    values = [v for params in column.all_params() for v in params.values]  # type: ignore[attr-defined]
    return list(value_array(values).tolist())


def _check_condition_values(column: SamplerColumn, by_name: Mapping[str, SamplerColumn]) -> None:
    # A literal a category never takes is a typo: the condition would silently never (or always) hold.
    for condition, _ in column.conditions():
        source = by_name.get(condition.column)
        if source is not None and condition.operator in ORDERING_OPERATORS:
            _check_comparison(column, condition, source)
            continue
        if source is None or source.sampler_type != "category":
            continue
        possible = _category_values(source)
        literals = condition.value if condition.operator in ("in", "not in") else (condition.value,)
        unknown = [literal for literal in literals if literal not in possible]
        if unknown:
            raise ConfigError(f"sampler column {column.name!r}: condition on {condition.column!r} compares "
                              f"with {unknown}, which {condition.column!r} never takes (its values: "
                              f"{sorted(set(map(str, possible)))}); quote strings and check the spelling")


def _check_comparison(column: SamplerColumn, condition: Condition, source: SamplerColumn) -> None:
    # A number compared with text (or a date with a number) would raise mid-run or never hold.
    kind = _value_kind(source)
    where = f"sampler column {column.name!r}: condition '{condition.column} {condition.operator} {condition.value!r}'"
    if kind not in ("number", "datetime"):
        raise ConfigError(f"{where}: {condition.column!r} has {kind} values, which have no order; use == or in")
    if kind == "datetime" and not _is_iso_date(condition.value):
        raise ConfigError(f"{where}: compare the datetime column {condition.column!r} with an ISO date "
                          "such as '2024-06-01'")
    if kind == "number" and isinstance(condition.value, str):
        raise ConfigError(f"{where}: {condition.column!r} has numbers; compare it with a number, e.g. > 21")


def _is_iso_date(value: Any) -> bool:
    try:
        return isinstance(value, str) and not np.isnat(np.datetime64(value))
    except ValueError:
        return False


def _check_distributions(column: SamplerColumn) -> None:
    # Config parsing checked names against our fixed table; the values need scipy itself, which a
    # run of this column needs anyway, so a missing extra is reported here, before any work.
    for params in column.all_params():
        # The scipy sampler always draws with scipy.stats; a mixture only for non-numpy names.
        if isinstance(params, ScipyParams) or (isinstance(params, BernoulliMixtureParams)
                                               and params.dist_name not in NUMPY_DISTRIBUTIONS):
            _check_scipy_values(column.name, params.dist_name, params.dist_params)


def _check_scipy_values(column: str, name: str, dist_params: Mapping[str, float]) -> None:
    try:
        import scipy.stats
    except ImportError:
        raise ConfigError(f"sampler column {column!r}: the scipy distribution {name!r} needs scipy; "
                          f"{SCIPY_HINT}") from None
    dist = getattr(scipy.stats, name, None)
    if dist is None:
        raise ConfigError(f"sampler column {column!r}: scipy {scipy.__version__} has no distribution {name!r}; "
                          "upgrade scipy")
    try:
        dist.rvs(**dist_params, size=2, random_state=np.random.default_rng(0))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sampler column {column!r}: scipy distribution {name!r} rejects dist_params "
                          f"{dict(dist_params)}: {exc}") from None


def _check_references(column: SamplerColumn, by_name: Mapping[str, SamplerColumn],
                      available: set[str]) -> None:
    for name in sorted(column.required_columns()):
        if name not in available:
            raise ConfigError(f"sampler column {column.name!r} reads column {name!r}, which is neither a "
                              "sampler column nor an earlier column of the config")
    for condition, _ in column.conditions():
        source = by_name.get(condition.column)
        if source is not None and source.sampler_type == "person":
            raise ConfigError(f"sampler column {column.name!r}: a condition cannot compare the person "
                              f"column {condition.column!r}; condition on a category column instead")
    for params in [column.params, *(p for _, p in column.conditions())]:
        if isinstance(params, SubcategoryParams):
            _check_subcategory(column.name, params, by_name)
        elif isinstance(params, TimedeltaParams):
            source = by_name.get(params.reference_column_name)
            if source is not None and source.sampler_type not in DATETIME_SAMPLERS:
                raise ConfigError(f"timedelta column {column.name!r}: reference column "
                                  f"{params.reference_column_name!r} is a {source.sampler_type} sampler, "
                                  "not a datetime one")


def _check_subcategory(name: str, params: SubcategoryParams, by_name: Mapping[str, SamplerColumn]) -> None:
    parent = by_name.get(params.category)
    if parent is None or parent.sampler_type != "category":
        raise ConfigError(f"subcategory column {name!r}: parent {params.category!r} must be a category "
                          "sampler column of the same config")
    keys = list(params.values)
    missing = sorted({str(v) for v in _category_values(parent) if subcategory_key(v, keys) is None})
    if missing:
        raise ConfigError(f"subcategory column {name!r}: no subcategories for values {missing} of "
                          f"{params.category!r}; add them to values (keys are the values as strings, "
                          f"e.g. {missing[0]!r})")


def sampler_order(columns: Sequence[SamplerColumn]) -> list[SamplerColumn]:
    """Columns ordered so that each comes after the sampler columns it reads; ConfigError on a cycle."""
    by_name = {column.name: column for column in columns}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for column in columns:
        sorter.add(column.name, *sorted(n for n in column.required_columns() if n in by_name))
    try:
        return [by_name[name] for name in sorter.static_order()]
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise ConfigError(f"sampler columns depend on each other in a cycle: {cycle}; break it by "
                          "removing one condition or reference") from exc


# ------------------------------------------------------------------------------------------- arrays

def _take(values: Any, rows: np.ndarray) -> Any:
    return values.take(pa.array(rows)) if isinstance(values, pa.Array) else values[rows]


def _take_all(inputs: Mapping[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {name: _take(values, rows) for name, values in inputs.items()}


def _concat(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], pa.Array):
        return pa.concat_arrays(parts)
    return np.concatenate(parts)


def _scatter(parts: Sequence[Any], rows: Sequence[np.ndarray], n: int) -> Any:
    """One array of ``n`` rows where ``parts[i]`` lands on ``rows[i]`` (the rows partition 0..n-1)."""
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.concatenate(rows)] = np.arange(n, dtype=np.int64)
    return _take(_concat(parts), inverse)


def _replace_rows(values: Any, rows: np.ndarray, new: Any) -> Any:
    positions = np.arange(len(values), dtype=np.int64)
    positions[rows] = len(values) + np.arange(len(rows), dtype=np.int64)
    return _take(_concat([values, new]), positions)


def _as_numpy(values: Any) -> Any:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.to_numpy(zero_copy_only=False)
    return values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)


def condition_mask(condition: Condition, values: Any) -> np.ndarray:
    """Rows where ``condition`` holds, compared with Python equality semantics, vectorised."""
    values = _as_numpy(values)
    if condition.operator in ORDERING_OPERATORS:
        return _ordering_mask(condition, values)
    literals = condition.value if condition.operator in ("in", "not in") else (condition.value,)
    mask = np.zeros(len(values), dtype=bool)
    for literal in literals:
        equal = values == literal
        mask |= equal if isinstance(equal, np.ndarray) else bool(equal)
    return ~mask if condition.operator in ("!=", "not in") else mask


_COMPARE = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def _ordering_mask(condition: Condition, values: np.ndarray) -> np.ndarray:
    """``values <op> literal``; a datetime column compares with an ISO date, anything else with a number."""
    literal = condition.value
    if values.dtype.kind == "M":
        literal = np.datetime64(literal)
    try:
        return np.asarray(_COMPARE[condition.operator](values, literal), dtype=bool)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"condition '{condition.column} {condition.operator} {condition.value!r}': the values "
                          f"of {condition.column!r} cannot be compared with {condition.value!r} ({exc}); compare "
                          "a numeric column with a number, a datetime column with an ISO date") from None


# ------------------------------------------------------------------------------------------- drawing

def draw_column(column: SamplerColumn, n: int, rng: np.random.Generator, inputs: Mapping[str, Any]) -> Any:
    """``n`` values of one column: one draw per condition group, scattered back by row."""
    conditions = column.conditions()
    if not conditions:
        return draw(column.sampler_type, column.params, n, rng, inputs)
    group = np.zeros(n, dtype=np.int64)  # 0: base params; i: the i-th condition (first match wins)
    for number, (condition, _) in enumerate(conditions, start=1):
        group[(group == 0) & condition_mask(condition, inputs[condition.column])] = number
    parts, rows = [], []
    for number, params in enumerate([column.params, *(p for _, p in conditions)]):
        selected = np.flatnonzero(group == number)
        if selected.size or number == 0:
            parts.append(draw(column.sampler_type, params, selected.size, rng, _take_all(inputs, selected)))
            rows.append(selected)
    return _scatter(parts, rows, n)


def _inputs(column: SamplerColumn, drawn: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    return {name: drawn[name] if name in drawn else known[name] for name in column.required_columns()}


def sample_columns(columns: Sequence[SamplerColumn], constraints: Sequence[ConstraintModel] = (), *,
                   num_rows: int, run_seed: int, batch_index: int,
                   context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Draw every sampler column of one batch; returns arrays keyed by column name, in input order.

    ``context`` holds already-known columns (seed columns) that conditions, timedelta references
    and column constraints may read. Dtypes are listed in ``gristmill.sampling.samplers``.

    >>> cols = [SamplerColumn(name="x", sampler_type="uniform", params={"low": 0, "high": 1})]
    >>> sample_columns(cols, num_rows=3, run_seed=1, batch_index=0)["x"].shape
    (3,)
    """
    referenced = {n for c in columns for n in c.required_columns()}
    referenced |= {n for c in constraints for n in c.referenced_columns()}
    known = {name: _as_numpy(values) for name, values in (context or {}).items() if name in referenced}
    for name, values in known.items():
        if len(values) != num_rows:
            raise ConfigError(f"context column {name!r} has {len(values)} rows but the batch has {num_rows}")
    validate_sampler_columns(columns, constraints, known_columns=set(context or {}))
    ordered = sampler_order(columns)
    drawn: dict[str, Any] = {}
    for column in ordered:
        rng = column_rng(run_seed, batch_index, column.name)
        drawn[column.name] = draw_column(column, num_rows, rng, _inputs(column, drawn, known))
    if constraints:
        _enforce_constraints(ordered, constraints, drawn, known, run_seed=run_seed, batch_index=batch_index)
    return {column.name: convert_values(column, drawn[column.name]) for column in columns}


def convert_values(column: SamplerColumn, values: Any) -> Any:
    """The drawn values in the column's ``convert_to`` type (unchanged without one).

    int truncates toward zero, like the reference tool's ``astype(int)``; numeric text (a category
    of '1', '2.5') goes through float first.
    """
    target = column.convert_to
    if target is None:
        return values
    values = np.asarray(values)
    try:
        if column.sampler_type in DATETIME_SAMPLERS:
            return _format_datetimes(values, target)
        if target == "str":
            return values.astype(str).astype(object)
        if values.dtype == object:
            values = values.astype(np.float64)
        return values.astype(np.float64 if target == "float" else np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"sampler column {column.name!r}: cannot convert its values to {target!r}: {exc}; "
                          "change convert_to or the sampler's params") from None


def _format_datetimes(values: np.ndarray, target: str) -> np.ndarray:
    import pandas as pd

    stamps = pd.DatetimeIndex(values.astype("datetime64[s]"))
    text = stamps.strftime("%Y-%m-%dT%H:%M:%S" if target == "str" else target)
    return np.asarray(text, dtype=object)


def _violations(constraints: Sequence[ConstraintModel], values: Mapping[str, Any]) -> np.ndarray:
    """Rows that break at least one constraint (``constraints`` is not empty)."""
    masks = [violation_mask(constraint, values) for constraint in constraints]
    return np.asarray(np.logical_or.reduce(masks), dtype=bool)


def _redrawn_columns(ordered: Sequence[SamplerColumn],
                     constraints: Sequence[ConstraintModel]) -> list[SamplerColumn]:
    """Constraint targets, right-hand sampler columns, and every sampler column drawn from them, in
    drawing order.

    Redrawing only the target cannot fix a row whose right-hand value leaves no room (``end > start``
    where ``start`` is the last day of the range), so a right-hand column that is a sampler is redrawn
    together with the target in the violating rows.
    """
    samplers = {column.name for column in ordered}
    names = {constraint.target_column for constraint in constraints}
    names |= {c.rhs_column for c in constraints if isinstance(c, ColumnInequality) and c.rhs_column in samplers}
    # A redrawn column invalidates the columns drawn from it (a category's subcategory, a timedelta
    # of a datetime); topological order makes this transitive.
    for column in ordered:
        if column.required_columns() & names:
            names.add(column.name)
    return [column for column in ordered if column.name in names]


def _candidates_per_row(round_number: int, failing: int) -> int:
    # Doubling the candidates each round makes rare-but-possible constraints (10% acceptance)
    # converge in a few rounds; the cap bounds memory for large batches.
    return int(max(1, min(2**round_number, MAX_CANDIDATES_PER_ROW, MAX_CANDIDATES // max(failing, 1))))


def _enforce_constraints(ordered: Sequence[SamplerColumn], constraints: Sequence[ConstraintModel],
                         drawn: dict[str, Any], known: Mapping[str, Any], *, run_seed: int,
                         batch_index: int) -> None:
    """Rejection sampling in place: redraw the constrained columns of violating rows, bounded rounds.

    Round ``r`` draws up to ``2**r`` candidates per violating row (from the ``retry<r>`` streams)
    and keeps each row's first candidate that satisfies every constraint. Rows that satisfy the
    constraints are never touched.
    """
    redrawn = _redrawn_columns(ordered, constraints)
    read = {name for constraint in constraints for name in constraint.referenced_columns()}
    for round_number in range(MAX_REJECTION_ROUNDS):
        selected = np.flatnonzero(_violations(constraints, {**known, **drawn}))
        if selected.size == 0:
            return
        per_row = _candidates_per_row(round_number, selected.size)
        rows = np.repeat(selected, per_row)
        candidates: dict[str, Any] = {}
        for column in redrawn:
            rng = column_rng(run_seed, batch_index, column.name, purpose=f"retry{round_number}")
            inputs = {**_take_all(_inputs(column, drawn, known), rows), **candidates}
            inputs = {name: inputs[name] for name in column.required_columns()}
            candidates[column.name] = draw_column(column, rows.size, rng, inputs)
        current = {**known, **drawn}
        values = {name: candidates[name] if name in candidates else _take(current[name], rows)
                  for name in read}
        passed = ~_violations(constraints, values).reshape(selected.size, per_row)
        pick = np.arange(selected.size) * per_row + passed.argmax(axis=1)  # first passing, else the first
        for name, values_ in candidates.items():
            drawn[name] = _replace_rows(drawn[name], selected, _take(values_, pick))
    values = {**known, **drawn}
    failures = [(c, int(violation_mask(c, values).sum())) for c in constraints]
    failures = [(c, count) for c, count in failures if count]
    if failures:
        raise unsatisfied_error(failures, num_rows=len(values[constraints[0].target_column]),
                                rounds=MAX_REJECTION_ROUNDS)
