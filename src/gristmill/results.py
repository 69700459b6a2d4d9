"""``DatasetResults``: what ``Mill.create`` returns, read from the dataset directory."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.analysis import DatasetAnalysis, analyze_files
from gristmill.config.dataset import ConfigBuilder, DatasetConfig
from gristmill.errors import ArtifactError, ConfigError
from gristmill.report import SampleRecord, sample_record, write_dataset_report
from gristmill.storage.atomic import fsync_dir, temp_path_for, write_bytes_atomic
from gristmill.storage.layout import ANALYSIS_FILE, DatasetLayout
from gristmill.storage.metadata import DatasetMetadata
from gristmill.storage.tables import (
    drop_pandas_index,
    read_parquet_checked,
    read_parquet_metadata_checked,
    schema_without_pandas_index,
)

EXPORT_FORMATS = ("jsonl", "csv", "parquet")


def unified_schema(paths: Sequence[Path]) -> pa.Schema:
    """One schema for all files, from their footers: first-seen column order, null-typed
    columns promoted to the type other batches have."""
    schemas = [schema_without_pandas_index(read_parquet_metadata_checked(p).schema.to_arrow_schema()) for p in paths]
    return pa.unify_schemas(schemas, promote_options="permissive")


def iter_parquet_tables(paths: Sequence[Path]) -> Iterator[pa.Table]:
    """Each file's table, one at a time, conformed to the files' unified schema (exports stream
    batch by batch, and every batch comes out with the same columns in the same order)."""
    if not paths:
        return
    schema = unified_schema(paths)
    for path in paths:
        table = drop_pandas_index(read_parquet_checked(path))
        yield conform(table, schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order; a column the file lacks (``__errors``
    is written only by batches that had a failed cell) is null."""
    if table.schema == schema:
        return table
    columns = [table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.table(columns, schema=schema.remove_metadata()).cast(schema)


def read_parquet_files(paths: Sequence[Path]) -> pd.DataFrame:
    """All files as one DataFrame, columns in one order."""
    if not paths:
        return pd.DataFrame()
    return pa.concat_tables(list(iter_parquet_tables(paths))).to_pandas()


def count_parquet_rows(paths: Sequence[Path]) -> int:
    """Row count from parquet footers only (no data pages read)."""
    return sum(read_parquet_metadata_checked(p).num_rows for p in paths)


def parquet_files(path: Path) -> list[Path]:
    """A parquet file itself, or the sorted parquet files of a directory."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    raise ArtifactError(f"{path} does not exist")


def export_tables(tables: Iterator[pa.Table], path: str | Path, fmt: str | None = None) -> Path:
    """Stream tables to one jsonl/csv/parquet file (format from ``fmt`` or the suffix), atomically."""
    out = Path(path)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"cannot export to {str(out)!r}: format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}; "
                          "pass format= or use a .jsonl/.csv/.parquet suffix")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(out)
    writer: Any = None
    try:
        with open(tmp, "wb") as handle:
            for index, table in enumerate(tables):
                if fmt == "jsonl":
                    handle.write(_jsonl(table))
                elif fmt == "csv":
                    handle.write(_csv(table, header=index == 0))
                else:
                    writer = writer or pq.ParquetWriter(handle, table.schema)
                    writer.write_table(table)
            if writer is not None:
                writer.close()
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)
    return out


def _json_default(value: Any) -> Any:
    """Dates and times as ISO 8601, durations as seconds, decimals as exact text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return str(value)
    raise ConfigError(f"cannot export a value of type {type(value).__name__} to JSON; export to parquet instead")


def _finite(value: Any) -> Any:
    """NaN and infinities as null (they are not JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _jsonl(table: pa.Table) -> bytes:
    """JSON lines with every float exactly as stored (shortest repr), dates in ISO 8601."""
    lines = []
    for row in table.to_pylist():
        try:
            text = json.dumps(row, ensure_ascii=False, allow_nan=False, default=_json_default)
        except ValueError:
            text = json.dumps(_finite(row), ensure_ascii=False, default=_json_default)
        lines.append(text)
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _csv(table: pa.Table, *, header: bool) -> bytes:
    """CSV; nested values (structs, lists) as JSON text so they can be parsed back."""
    frame = table.to_pandas()
    for name, field in zip(table.column_names, table.schema, strict=True):
        if pa.types.is_nested(field.type):
            frame[name] = [None if v is None else json.dumps(v, ensure_ascii=False, default=_json_default)
                           for v in table.column(name).to_pylist()]
    text: str = frame.to_csv(index=False, header=header)
    return text.encode()


class DatasetResults:
    """A generated dataset on disk: load it, count it, export it, or build a new config from it."""

    def __init__(self, artifact_path: Path, metadata: DatasetMetadata | None = None, *,
                 generated_rows: int | None = None, run_usage: dict[str, dict[str, int]] | None = None) -> None:
        self.artifact_path = Path(artifact_path)
        self._layout = DatasetLayout(self.artifact_path)
        self._metadata = metadata
        self.generated_rows = generated_rows
        """Rows generated by the call that returned these results (0: it was complete; None: loaded)."""
        self.run_usage = run_usage or {}
        """Model usage of the call that returned these results alone (``usage`` sums every run)."""

    @property
    def metadata(self) -> DatasetMetadata:
        """The dataset's typed ``metadata.json`` (fingerprint, seed, batches, usage, timings)."""
        if self._metadata is None:
            self._metadata = DatasetMetadata.load(self._layout.metadata_path)
        return self._metadata

    @property
    def usage(self) -> dict[str, dict[str, int]]:
        return self.metadata.usage

    @property
    def cost(self) -> float | None:
        """Cost of every run of the dataset at the token prices of its last run (``input_cost_per_million``,
        ``output_cost_per_million`` on the model); None when no model it used has a price."""
        by_model = self.cost_by_model
        return sum(by_model.values()) if by_model else None

    @property
    def cost_by_model(self) -> dict[str, float]:
        """Cost by model alias, priced models only."""
        meta = self.metadata
        return {alias: cost for alias, cost in meta.cost.items() if alias in meta.usage}

    @property
    def run_cost(self) -> float | None:
        """Cost of the call that returned these results alone (``run_usage`` at the same prices)."""
        prices = self.metadata.prices
        costs = [prices[alias].cost(counters) for alias, counters in self.run_usage.items() if alias in prices]
        return sum(costs) if costs else None

    @property
    def config(self) -> DatasetConfig:
        """The config as run (from ``config.json``)."""
        return DatasetConfig.from_dict(json.loads(self._layout.config_path.read_text(encoding="utf-8")),
                                       source=str(self._layout.config_path))

    def batch_files(self) -> list[Path]:
        """The main parquet file of every completed batch, in order."""
        return [self.artifact_path / b.file for b in self.metadata.completed_batches]

    def load_analysis(self) -> DatasetAnalysis:
        """Column statistics (``analysis.json``), computed from the batch files if not stored yet."""
        path = self.artifact_path / ANALYSIS_FILE
        meta = self.metadata
        if path.exists():
            stored = DatasetAnalysis.load(path)
            if stored.rows == meta.actual_rows:
                return stored
        analysis = analyze_files(self.batch_files())
        write_bytes_atomic(path, analysis.model_dump_json(indent=2).encode())
        return analysis

    def processor_files(self, name: str) -> list[Path]:
        """Parquet files of the named processor's output."""
        return [self.artifact_path / b.processor_files[name].file for b in self.metadata.completed_batches
                if name in b.processor_files]

    def report(self, path: str | Path | None = None) -> Path:
        """Write this dataset's HTML report (default ``<dataset>/report.html``; docs/report.md)."""
        return write_dataset_report(self.artifact_path, path)

    def display_sample_record(self, index: int) -> SampleRecord:
        """Row ``index`` as a field/value table in a notebook (plain lines when printed)."""
        return sample_record(self.artifact_path, index)

    def load_dataset(self) -> pd.DataFrame:
        """The whole dataset as a pandas DataFrame."""
        return read_parquet_files(self.batch_files())

    def load_processor_output(self, name: str) -> pd.DataFrame:
        """A named processor's dataset (e.g. a schema_transform) as a DataFrame."""
        return read_parquet_files(self.processor_files(name))

    def count_records(self) -> int:
        """Number of rows, read from parquet footers only."""
        return count_parquet_rows(self.batch_files())

    def export(self, path: str | Path, format: str | None = None) -> Path:  # noqa: A002 - public API name
        """Write the dataset to one jsonl / csv / parquet file, batch by batch."""
        return export_tables(iter_parquet_tables(self.batch_files()), path, format)

    def to_config_builder(self, columns: Sequence[str] | None = None) -> ConfigBuilder:
        """A builder seeded with this dataset (optionally only ``columns``), for a follow-up dataset."""
        builder = ConfigBuilder()
        if columns is None:  # the parquet files themselves, not a copy in memory
            return builder.with_seed_dataset(str(self._layout.parquet_dir))
        frame = self.load_dataset()
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigError(f"columns {missing} are not in the dataset; it has {list(frame.columns)}")
        return builder.with_seed_dataset(frame[list(columns)])

    def __repr__(self) -> str:
        return f"DatasetResults({str(self.artifact_path)!r}, rows={self.metadata.actual_rows})"
