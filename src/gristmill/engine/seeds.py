"""Seed datasets: read once (a whole source by its reader, or each file by the reader registered for
its suffix: ``seed_readers.py``), select rows, hand out each batch's rows deterministically."""

from __future__ import annotations

import glob as globlib
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.config.dataset import dataframe_digest
from gristmill.config.seeds import IndexRange, PartitionBlock, SamplingStrategy, SeedConfig
from gristmill.engine.seed_readers import (
    is_glob,
    read_seed_file,
    read_seed_source,
    reader_name,
    table_digest,
    whole_source_reader,
)
from gristmill.errors import SeedDatasetError
from gristmill.sampling.rng import stream_key
from gristmill.storage.tables import schema_without_pandas_index


def seed_files(source: str) -> list[Path]:
    """The files a path, glob or directory source names, sorted; SeedDatasetError if none."""
    if is_glob(source):
        files = sorted(Path(p) for p in globlib.glob(source, recursive=True) if Path(p).is_file())
        if not files:
            raise SeedDatasetError(f"seed glob {source!r} matches no files; check the pattern")
        return files
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
        if not files:
            raise SeedDatasetError(f"seed directory {source!r} holds no .parquet files")
        return files
    if not path.exists():
        raise SeedDatasetError(f"seed file {source!r} does not exist; check the path (a relative path in a config "
                               f"file is taken from the file's folder, else from the working directory {Path.cwd()})")
    return [path]


def load_seed_table(seed: SeedConfig) -> pa.Table:
    """All seed rows after selection, as one table; raises SeedDatasetError naming the source."""
    if seed.is_dataframe:
        label = "in-memory DataFrame"
        try:
            table = pa.Table.from_pandas(seed.source, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # e.g. an object column mixing str and int
            raise SeedDatasetError(f"seed dataset {label} cannot be stored as parquet: {exc}; give each column "
                                   "one type (df[col].astype(str), for example)") from None
    else:
        table = _read_source(seed)
        label = repr(seed.source)
    start, stop = _selected_rows(table.num_rows, seed, label)
    return table.slice(start, stop - start).combine_chunks()


def _read_source(seed: SeedConfig) -> pa.Table:
    """Every row of a path seed: a whole source in one reader call, else file by file."""
    whole = whole_source_reader(seed.source, seed.reader)
    if whole is not None:
        return read_seed_source(seed.source, reader=whole, options=seed.reader_options)
    tables = [read_seed_file(p, reader=seed.reader, options=seed.reader_options) for p in seed_files(seed.source)]
    try:
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SeedDatasetError(f"seed files of {seed.source!r} have incompatible schemas: {exc}") from None


def seed_column_names(seed: SeedConfig) -> list[str]:
    """The seed's columns, with the same checks as ``load_seed_table`` (missing, empty, selection out
    of bounds); parquet seeds are checked from their footers without reading any data."""
    if seed.is_dataframe or whole_source_reader(seed.source, seed.reader) is not None:
        return list(load_seed_table(seed).column_names)  # in memory already, or read whole
    files = seed_files(seed.source)
    if any((seed.reader or reader_name(p)) != "parquet" for p in files):
        return list(load_seed_table(seed).column_names)  # csv/json...: read it
    try:
        footers = [pq.ParquetFile(p).metadata for p in files]
    except (pa.ArrowException, OSError) as exc:
        raise SeedDatasetError(f"cannot read seed {seed.source!r}: {exc}") from None
    _selected_rows(sum(f.num_rows for f in footers), seed, repr(seed.source))
    schemas = [schema_without_pandas_index(f.schema.to_arrow_schema()) for f in footers]
    try:
        return list(pa.unify_schemas(schemas, promote_options="permissive").names)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SeedDatasetError(f"seed files of {seed.source!r} have incompatible schemas: {exc}") from None


def _selected_rows(total: int, seed: SeedConfig, label: str) -> tuple[int, int]:
    """[start, stop) of the seed rows the selection strategy keeps; SeedDatasetError when impossible."""
    if total == 0:
        raise SeedDatasetError(f"seed dataset {label} is empty; a seed needs at least one row")
    sel = seed.selection_strategy
    if isinstance(sel, IndexRange):
        if sel.end >= total:
            raise SeedDatasetError(f"IndexRange({sel.start}, {sel.end}) is out of bounds: seed dataset {label} "
                                   f"has {total} rows (0 to {total - 1}; end is inclusive)")
        return sel.start, sel.stop
    if isinstance(sel, PartitionBlock):
        if sel.num_partitions > total:
            raise SeedDatasetError(f"PartitionBlock splits {label} ({total} rows) into {sel.num_partitions} "
                                   "partitions; use at most one partition per row")
        bounds = np.linspace(0, total, sel.num_partitions + 1).astype(int)
        return int(bounds[sel.index]), int(bounds[sel.index + 1])
    return 0, total


def seed_digest(seed: SeedConfig) -> str:
    """Content digest of the seed source: a changed seed file changes it, a moved one does not."""
    if seed.is_dataframe:
        return dataframe_digest(seed.source)
    whole = whole_source_reader(seed.source, seed.reader)
    if whole is not None:
        # What the reader returns: a folder's file names and contents, a Hugging Face dataset's
        # rows; never modification times, nor where the source lies.
        return table_digest(read_seed_source(seed.source, reader=whole, options=seed.reader_options))
    digest = hashlib.sha256()
    for path in seed_files(seed.source):
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    from gristmill.storage.atomic import sha256_file

    return sha256_file(path)


class SeedReader:
    """Rows of a seed table for dataset rows ``[offset, offset + n)``: ordered or shuffled, cycling."""

    def __init__(self, table: pa.Table, strategy: SamplingStrategy, run_seed: int) -> None:
        self.table = table
        self.strategy = strategy
        self.run_seed = run_seed

    def rows_for(self, offset: int, num_rows: int) -> pa.Table:
        size = self.table.num_rows
        positions = np.arange(offset, offset + num_rows, dtype=np.int64)
        if self.strategy is SamplingStrategy.ORDERED:
            indices = positions % size
        else:
            # Each pass over the seed is its own permutation, seeded by pass number, so any
            # batch can be rebuilt alone after a crash.
            epochs = positions // size
            indices = np.empty_like(positions)
            for epoch in np.unique(epochs):
                perm = np.random.default_rng(stream_key(self.run_seed, "seed-shuffle", int(epoch))).permutation(size)
                mask = epochs == epoch
                indices[mask] = perm[positions[mask] % size]
        return self.table.take(pa.array(indices))


__all__ = ["SeedReader", "load_seed_table", "seed_column_names", "seed_digest", "seed_files"]
