"""One record of a dataset for a notebook: a field/value table (``_repr_html_``) or plain text."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from gristmill.errors import ConfigError
from gristmill.report.page import cell_html, cell_text
from gristmill.report.profile import ERRORS_COLUMN, INTERNAL_COLUMNS
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import DatasetMetadata
from gristmill.storage.tables import drop_pandas_index, read_parquet_checked


@dataclass(frozen=True)
class SampleRecord:
    """Row ``index`` of a dataset; a notebook shows it as a table, a terminal as lines."""

    index: int
    values: dict[str, Any]
    problems: list[dict[str, Any]]  # the row's ``__errors`` entries

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style=\"text-align:left;vertical-align:top\">{escape(name)}</th>"
                       f"<td style=\"white-space:pre-wrap;text-align:left\">{cell_html(value)}</td></tr>"
                       for name, value in self.values.items())
        problems = "".join(f"<li>{escape(cell_text(p))}</li>" for p in self.problems)
        return (f"<div><b>record {self.index}</b><table>{rows}</table>"
                + (f"<ul>{problems}</ul>" if problems else "") + "</div>")

    def __str__(self) -> str:
        lines = [f"record {self.index}"] + [f"  {name}: {cell_text(value)}" for name, value in self.values.items()]
        return "\n".join(lines + [f"  problem: {cell_text(p)}" for p in self.problems])


def sample_record(dataset_dir: str | Path, index: int) -> SampleRecord:
    """Row ``index`` (from 0) of a dataset directory, reading only the batch file that holds it."""
    meta = DatasetMetadata.load(DatasetLayout(Path(dataset_dir)).metadata_path)
    if not 0 <= index < meta.actual_rows:
        raise ConfigError(f"record {index} is out of range: the dataset {meta.dataset_name!r} has "
                          f"{meta.actual_rows} rows (0 to {meta.actual_rows - 1})")
    offset = 0
    for batch in meta.completed_batches:
        if index < offset + batch.rows:
            table = drop_pandas_index(read_parquet_checked(Path(dataset_dir) / batch.file))
            row = table.slice(index - offset, 1).to_pylist()[0]
            values = {k: v for k, v in row.items() if k not in INTERNAL_COLUMNS}
            return SampleRecord(index, values, list(row.get(ERRORS_COLUMN) or []))
        offset += batch.rows
    raise ConfigError(f"record {index} is not in the committed batches of {dataset_dir}")
