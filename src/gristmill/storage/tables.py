"""Reading parquet written by others: pandas may store its index as extra columns."""

from __future__ import annotations

import pyarrow as pa


def pandas_index_columns(schema: pa.Schema) -> list[str]:
    """Columns pandas wrote for a non-default index (``__index_level_0__``): bookkeeping, not data.

    A user's callback or seed file written with ``DataFrame.to_parquet`` after filtering keeps
    its old index that way; it must not become a column of ours.
    """
    metadata = schema.pandas_metadata or {}
    return [n for n in metadata.get("index_columns", []) if isinstance(n, str) and n in schema.names]


def drop_pandas_index(table: pa.Table) -> pa.Table:
    """``table`` without pandas index columns (see ``pandas_index_columns``)."""
    stored = pandas_index_columns(table.schema)
    return table.drop_columns(stored).replace_schema_metadata(None) if stored else table


def schema_without_pandas_index(schema: pa.Schema) -> pa.Schema:
    """``schema`` without pandas index columns."""
    stored = set(pandas_index_columns(schema))
    if not stored:
        return schema
    return pa.schema([field for field in schema if field.name not in stored])
