"""What the report says about each column, computed from a pyarrow table (pure: no I/O).

A column's *kind* decides its chart: numbers get a histogram, few distinct values their counts,
free text a histogram of lengths, a judge column (a struct of ``{score, reasoning}`` structs)
one score histogram per score, a validation column (a struct with a boolean ``is_valid``) its
pass rate. Any other struct (a ``person`` sampler's record, a structured LLM answer) gets no
chart but a row per field: its type, kind, nulls and one-line summary. Failed and skipped cells
come from the per-row ``__errors`` list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ERRORS_COLUMN = "__errors"  # the engine's per-row list of failed/skipped cells (engine/cells.py)
FAILED_COLUMN = "__failed"  # on_failed_rows="mark": bookkeeping, not data
INTERNAL_COLUMNS = frozenset({ERRORS_COLUMN, FAILED_COLUMN})
TEXT_COLUMN_TYPES = frozenset({"llm_text", "llm_code"})
TOP_CATEGORIES = 12
MAX_CATEGORIES = 20  # a string column with more distinct values is text (charted by length)
HISTOGRAM_BINS = 20
FIELD_NAMES_SHOWN = 4  # in a struct column's summary; its card lists every field
TOP_VALUES_SHOWN = 3  # in a category field's summary


@dataclass(frozen=True)
class Chart:
    """Labelled bars: a histogram's bins (``histogram=True``) or the counts of values."""

    title: str
    labels: tuple[str, ...]
    counts: tuple[int, ...]
    kind: str  # numeric | category | text | judge | validation: the bars' colour
    histogram: bool = False
    note: str = ""


@dataclass(frozen=True)
class FieldProfile:
    """One field of a struct column: described like a column, without a chart."""

    name: str
    type: str
    kind: str
    nulls: int
    summary: str


@dataclass(frozen=True)
class ColumnProfile:
    """One column as the report shows it."""

    name: str
    type: str
    kind: str
    rows: int
    nulls: int
    failed: int
    skipped: int
    summary: str
    charts: tuple[Chart, ...]
    fields: tuple[FieldProfile, ...] = ()  # of a struct column (kind 'struct')


def cell_problems(table: pa.Table) -> Counter[tuple[str, str]]:
    """(column, kind) -> cells listed in ``__errors`` (kind 'failed' or 'skipped')."""
    if ERRORS_COLUMN not in table.column_names:
        return Counter()
    entries = pc.list_flatten(table.column(ERRORS_COLUMN).combine_chunks())
    if len(entries) == 0:
        return Counter()
    pairs = zip(entries.field("column").to_pylist(), entries.field("kind").to_pylist(), strict=True)
    return Counter((str(column), str(kind)) for column, kind in pairs)


def profile_table(table: pa.Table, column_types: Mapping[str, str] | None = None) -> list[ColumnProfile]:
    """Every data column of ``table``; ``column_types`` (name -> config ``column_type``) tells
    LLM text from categories where the values alone cannot."""
    problems = cell_problems(table)
    types = column_types or {}
    return [profile_column(name, table.column(name), column_type=types.get(name),
                           failed=problems[(name, "failed")], skipped=problems[(name, "skipped")])
            for name in table.column_names if name not in INTERNAL_COLUMNS]


def profile_column(name: str, column: pa.ChunkedArray, *, column_type: str | None = None,
                   failed: int = 0, skipped: int = 0) -> ColumnProfile:
    array = column.combine_chunks()
    kind = column_kind(array, column_type)
    summary, charts = _DESCRIBE[kind](name, array)
    fields = struct_fields(array) if kind == "struct" else ()
    return ColumnProfile(name=name, type=str(array.type), kind=kind, rows=len(array), nulls=array.null_count,
                         failed=failed, skipped=skipped, summary=summary, charts=charts, fields=fields)


def struct_fields(array: pa.StructArray) -> tuple[FieldProfile, ...]:
    """Each field's kind, nulls (a null struct counts as null in each field) and summary; a
    category field's summary names its most frequent values."""
    out = []
    for index, values in enumerate(array.flatten()):
        name = array.type.field(index).name
        kind = column_kind(values, None)
        summary, charts = _DESCRIBE[kind](name, values)
        if kind == "category" and charts:
            top = ", ".join(f"{label} {count:,}" for label, count in
                            zip(charts[0].labels[:TOP_VALUES_SHOWN], charts[0].counts, strict=False))
            summary += f": {top}" + (", …" if len(charts[0].labels) > TOP_VALUES_SHOWN else "")
        out.append(FieldProfile(name=name, type=str(values.type), kind=kind, nulls=values.null_count, summary=summary))
    return tuple(out)


def column_kind(array: pa.Array, column_type: str | None) -> str:
    kind = array.type
    if pa.types.is_struct(kind):
        if _is_validation(kind):
            return "validation"
        if kind.num_fields and all(_is_score(kind.field(i).type) for i in range(kind.num_fields)):
            return "judge"
        return "struct"
    if pa.types.is_boolean(kind):
        return "category"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "numeric"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if column_type in TEXT_COLUMN_TYPES:
            return "text"
        distinct = pc.count_distinct(array).as_py()
        few = distinct <= MAX_CATEGORIES and distinct <= max(1, (len(array) - array.null_count) // 2)
        return "category" if few else "text"
    return "other"


def _is_validation(kind: pa.StructType) -> bool:
    index = kind.get_field_index("is_valid")
    return index >= 0 and bool(pa.types.is_boolean(kind.field(index).type))


def _is_score(kind: pa.DataType) -> bool:
    return bool(pa.types.is_struct(kind)) and kind.get_field_index("score") >= 0


def fmt(value: float | int) -> str:
    """A number short enough for a chart label."""
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{value:.4g}"


def _numeric(name: str, array: pa.Array) -> tuple[str, tuple[Chart, ...]]:
    values = array.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "no values", ()
    summary = f"min {fmt(values.min())} · max {fmt(values.max())} · mean {fmt(values.mean())} · std {fmt(values.std())}"
    distinct = np.unique(values)
    if pa.types.is_integer(array.type) and distinct.size <= MAX_CATEGORIES:
        counts = [(fmt(int(v)), int((values == v).sum())) for v in distinct]
        return summary, (Chart(name, *_unzip(counts), kind="numeric"),)
    counts_, edges = np.histogram(values, bins=min(HISTOGRAM_BINS, distinct.size))
    labels = tuple(f"{fmt(lo)} – {fmt(hi)}" for lo, hi in zip(edges[:-1], edges[1:], strict=True))
    return summary, (Chart(name, labels, tuple(int(c) for c in counts_), kind="numeric", histogram=True),)


def _category(name: str, array: pa.Array) -> tuple[str, tuple[Chart, ...]]:
    counts = pc.value_counts(array.drop_null()).to_pylist()
    ranked = sorted(((str(c["values"]), int(c["counts"])) for c in counts), key=lambda item: (-item[1], item[0]))
    shown = ranked[:TOP_CATEGORIES]
    note = f"top {len(shown)} of {len(ranked)} values" if len(ranked) > len(shown) else ""
    if not shown:
        return "no values", ()
    distinct = f"{len(ranked)} distinct {'value' if len(ranked) == 1 else 'values'}"
    return distinct, (Chart(name, *_unzip(shown), kind="category", note=note),)


def _text(name: str, array: pa.Array) -> tuple[str, tuple[Chart, ...]]:
    lengths = pc.utf8_length(array.drop_null()).to_numpy(zero_copy_only=False)
    if lengths.size == 0:
        return "no values", ()
    summary = f"length min {lengths.min():,} · mean {lengths.mean():.1f} · max {lengths.max():,} characters"
    counts, edges = np.histogram(lengths, bins=min(HISTOGRAM_BINS, max(1, int(lengths.max() - lengths.min()) + 1)))
    labels = tuple(f"{fmt(lo)} – {fmt(hi)} chars" for lo, hi in zip(edges[:-1], edges[1:], strict=True))
    chart = Chart(f"{name}: length", labels, tuple(int(c) for c in counts), kind="text", histogram=True)
    return summary, (chart,)


def _judge(name: str, array: pa.Array) -> tuple[str, tuple[Chart, ...]]:
    charts = []
    means = []
    for index in range(array.type.num_fields):
        score_name = array.type.field(index).name
        scores = array.field(index).field("score").drop_null()
        counts = Counter(scores.to_pylist())
        ordered = sorted(counts.items(), key=lambda item: _value_order(item[0]))
        charts.append(Chart(f"{name}.{score_name}", tuple(str(k) for k, _ in ordered),
                            tuple(v for _, v in ordered), kind="judge"))
        if pa.types.is_integer(scores.type) or pa.types.is_floating(scores.type):
            means.append(f"{score_name} mean {fmt(float(pc.mean(scores).as_py() or 0.0))}")
    return " · ".join(means) or f"{len(charts)} scores", tuple(charts)


def _validation(name: str, array: pa.Array) -> tuple[str, tuple[Chart, ...]]:
    valid = array.field("is_valid")
    passed = int(pc.sum(valid).as_py() or 0)
    answered = len(valid) - valid.null_count
    chart = Chart(f"{name}: is_valid", ("valid", "invalid"), (passed, answered - passed), kind="validation")
    rate = f"{passed / answered:.0%} valid ({passed:,} of {answered:,})" if answered else "no answers"
    return rate, (chart,)


def _struct(name: str, array: pa.Array) -> tuple[str, tuple[Chart, ...]]:
    names = [array.type.field(i).name for i in range(array.type.num_fields)]
    shown = ", ".join(names[:FIELD_NAMES_SHOWN]) + (", …" if len(names) > FIELD_NAMES_SHOWN else "")
    return (f"{len(names)} {'field' if len(names) == 1 else 'fields'}: {shown}" if names else "no fields"), ()


def _other(name: str, array: pa.Array) -> tuple[str, tuple[Chart, ...]]:
    if pa.types.is_temporal(array.type) and len(array) > array.null_count:
        bounds = pc.min_max(array).as_py()
        return f"from {bounds['min']} to {bounds['max']}", ()
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        lengths = pc.list_value_length(array.drop_null())
        return f"mean length {float(pc.mean(lengths).as_py() or 0.0):.1f}" if len(lengths) else "no values", ()
    return "", ()


def _value_order(value: object) -> tuple[int, float, str]:
    """Numbers in numeric order, then anything else by its text (scores may be labels)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, str(value)


def _unzip(pairs: list[tuple[str, int]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    return tuple(label for label, _ in pairs), tuple(count for _, count in pairs)


_DESCRIBE = {"numeric": _numeric, "category": _category, "text": _text, "judge": _judge,
             "validation": _validation, "struct": _struct, "other": _other}
