"""The built-in seed file readers (registered in ``config/builtins.py``) and reader lookup by suffix.

A reader is ``read(path) -> pyarrow.Table``. A plugin adds one with
``registry.add_seed_reader("tsv", suffixes=(".tsv",), read="my_pkg.seeds:read_tsv")``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from gristmill.config.registry import get_registry, resolve_implementation
from gristmill.errors import SeedDatasetError
from gristmill.storage.tables import drop_pandas_index

SeedFileReader = Callable[[Path], pa.Table]


def read_parquet(path: Path) -> pa.Table:
    """A parquet file, without a stored pandas index."""
    return drop_pandas_index(pq.read_table(path))


def read_csv(path: Path) -> pa.Table:
    """A CSV file with a header row."""
    return pacsv.read_csv(path)


def read_json(path: Path) -> pa.Table:
    """JSON lines, or one JSON array of records."""
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip()
    if head.startswith(b"["):  # a JSON array of records, not JSON lines
        import pandas as pd

        return pa.Table.from_pandas(pd.read_json(path), preserve_index=False)
    return pajson.read_json(path)


def reader_name(path: Path) -> str | None:
    """The name of the reader registered for ``path``'s suffix ('parquet', 'csv'...), or None."""
    entry = get_registry().seed_reader_for(path.suffix)
    return entry.name if entry is not None else None


def seed_file_reader(path: Path) -> SeedFileReader:
    """The reader registered for ``path``'s suffix; SeedDatasetError naming the known suffixes if none."""
    entry = get_registry().seed_reader_for(path.suffix)
    if entry is None:
        known = sorted(s for r in get_registry().seed_readers().values() for s in r.suffixes)
        raise SeedDatasetError(f"seed file {str(path)!r} has an unsupported extension; use one of {', '.join(known)} "
                               "(or install a plugin that registers a seed reader for it)")
    read = resolve_implementation(entry.read, what=f"seed reader {entry.name!r} ({entry.read!r})",
                                  source=entry.source, error=SeedDatasetError)
    if not callable(read):
        raise SeedDatasetError(f"seed reader {entry.name!r} ({entry.source}) is not callable: {read!r}")
    return cast(SeedFileReader, read)


def read_seed_file(path: Path) -> pa.Table:
    """One seed file through its registered reader; SeedDatasetError naming the file on failure."""
    read = seed_file_reader(path)
    try:
        table = read(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SeedDatasetError(f"cannot read seed file {str(path)!r}: {exc}") from None
    if not isinstance(table, pa.Table):
        raise SeedDatasetError(f"the seed reader of {str(path)!r} returned {type(table).__name__}, not a "
                               "pyarrow.Table")
    return table
