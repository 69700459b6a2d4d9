"""Reading parquet written by others: pandas may store its index as extra columns."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.errors import ArtifactError

_UNNAMED = re.compile(r"__index_level_\d+__")


def pandas_index_columns(schema: pa.Schema) -> list[str]:
    """Columns pandas wrote for an unnamed non-default index (``__index_level_0__``): bookkeeping.

    A user's callback or seed file written with ``DataFrame.to_parquet`` after filtering keeps
    its old row numbers that way; they must not become a column of ours. A *named* index
    (``set_index("user_id")``, ``groupby("topic").first()``) is data and stays a column.
    """
    metadata = schema.pandas_metadata or {}
    return [n for n in metadata.get("index_columns", [])
            if isinstance(n, str) and _UNNAMED.fullmatch(n) and n in schema.names]


def drop_pandas_index(table: pa.Table) -> pa.Table:
    """``table`` as the data a user meant: unnamed pandas index columns dropped (see
    ``pandas_index_columns``), and a *named* RangeIndex, which pandas stores as metadata only,
    turned back into its column, first, as ``pandas.read_parquet`` would show it."""
    stored = pandas_index_columns(table.schema)
    ranges = [entry for entry in (table.schema.pandas_metadata or {}).get("index_columns", [])
              if isinstance(entry, dict) and entry.get("kind") == "range" and entry.get("name")
              and entry["name"] not in table.column_names]
    if table.schema.pandas_metadata is None:
        return table
    table = table.drop_columns(stored)
    for entry in reversed(ranges):
        values = pa.array(range(entry["start"], entry["stop"], entry["step"]) if table.num_rows else [], pa.int64())
        if len(values) == table.num_rows:  # an empty table stands for a schema
            table = table.add_column(0, str(entry["name"]), values)
    return table.replace_schema_metadata(None)


def schema_without_pandas_index(schema: pa.Schema) -> pa.Schema:
    """The schema ``drop_pandas_index`` gives a table of ``schema``."""
    return drop_pandas_index(schema.empty_table()).schema


def read_parquet_checked(path: Path) -> pa.Table:
    """``pq.read_table(path)``, with a file that no longer decodes reported as ``ArtifactError``
    naming it (never a raw ``OSError`` / ``ArrowInvalid`` from deep inside pyarrow)."""
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is recorded but missing; restore it or regenerate the dataset") from None
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path} is damaged and cannot be read ({exc}); restore it or regenerate the "
                            "dataset (resume=if-possible reruns what is damaged)") from None


def read_parquet_metadata_checked(path: Path) -> pq.FileMetaData:
    """A parquet footer (schema, row count), or ``ArtifactError`` naming the damaged file."""
    try:
        return pq.read_metadata(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path} is recorded but missing; restore it or regenerate the dataset") from None
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path} is damaged: its parquet footer cannot be read ({exc}); restore it or "
                            "regenerate the dataset") from None
