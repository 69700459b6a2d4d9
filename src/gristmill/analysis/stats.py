"""Per-column statistics computed batch by batch from the parquet files (memory stays flat)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

TOP_VALUES = 10
MAX_TRACKED_VALUES = 10_000  # beyond this many distinct values, top values are not tracked


class ColumnStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    count: int
    nulls: int
    min: Any = None
    max: Any = None
    mean: float | None = None
    std: float | None = None
    distinct: int | None = None  # None: more than MAX_TRACKED_VALUES
    top_values: list[tuple[Any, int]] | None = None
    mean_length: float | None = None  # strings


class DatasetAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    rows: int
    columns: list[ColumnStats]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([c.model_dump(exclude={"top_values"}) for c in self.columns])

    @classmethod
    def load(cls, path: Path) -> DatasetAnalysis:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


@dataclass
class _Accumulator:
    name: str
    type: str
    count: int = 0
    nulls: int = 0
    minimum: Any = None
    maximum: Any = None
    total: float = 0.0
    total_sq: float = 0.0
    numeric: int = 0
    length_total: int = 0
    values: Counter[Any] | None = field(default_factory=Counter)

    def add(self, array: pa.ChunkedArray) -> None:
        self.count += len(array)
        self.nulls += array.null_count
        kind = array.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind):
            self._add_ordered(array, numeric=not pa.types.is_temporal(kind))
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            self.length_total += int(pc.sum(pc.utf8_length(array)).as_py() or 0)
        if pa.types.is_string(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
            self._add_values(array)
        else:
            self.values = None

    def _add_ordered(self, array: pa.ChunkedArray, *, numeric: bool) -> None:
        bounds = pc.min_max(array).as_py()
        if bounds["min"] is not None:
            self.minimum = bounds["min"] if self.minimum is None else min(self.minimum, bounds["min"])
            self.maximum = bounds["max"] if self.maximum is None else max(self.maximum, bounds["max"])
        if numeric:
            as_float = pc.cast(array, pa.float64())
            self.total += float(pc.sum(as_float).as_py() or 0.0)
            self.total_sq += float(pc.sum(pc.multiply(as_float, as_float)).as_py() or 0.0)
            self.numeric += len(array) - array.null_count

    def _add_values(self, array: pa.ChunkedArray) -> None:
        if self.values is None:
            return
        counts = pc.value_counts(array.combine_chunks())
        for item in counts.to_pylist():
            self.values[item["values"]] += item["counts"]
        if len(self.values) > MAX_TRACKED_VALUES:
            self.values = None

    def finish(self) -> ColumnStats:
        mean = std = None
        if self.numeric:
            mean = self.total / self.numeric
            std = math.sqrt(max(self.total_sq / self.numeric - mean * mean, 0.0))
        values = self.values
        return ColumnStats(
            name=self.name, type=self.type, count=self.count, nulls=self.nulls,
            min=_jsonable(self.minimum), max=_jsonable(self.maximum), mean=mean, std=std,
            distinct=len(values) if values is not None else None,
            top_values=[(k, v) for k, v in values.most_common(TOP_VALUES)] if values is not None else None,
            mean_length=self.length_total / max(self.count - self.nulls, 1) if self.length_total else None)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def analyze_files(paths: Sequence[Path]) -> DatasetAnalysis:
    """Statistics of every column over ``paths``, reading one file at a time."""
    accumulators: dict[str, _Accumulator] = {}
    rows = 0
    for path in paths:
        table = pq.read_table(path)
        rows += table.num_rows
        for name in table.column_names:
            column = table.column(name)
            acc = accumulators.setdefault(name, _Accumulator(name=name, type=str(column.type)))
            acc.add(column)
    return DatasetAnalysis(rows=rows, columns=[acc.finish() for acc in accumulators.values()])
