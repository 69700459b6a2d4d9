"""The built-in seed file readers (registered in ``config/builtins.py``) and how a source picks one.

A reader is ``read(source, **options) -> pyarrow.Table``. A plugin adds one with
``registry.add_seed_reader("tsv", suffixes=(".tsv",), read="my_pkg.seeds:read_tsv")``.

How a seed source picks its reader (``docs/seeds.md``):

- ``SeedConfig.reader`` names one: it reads the source whole (a file, a directory, a URL), or
  each file of a glob; ``SeedConfig.reader_options`` are its keyword options.
- Otherwise ``hf://owner/name`` and a Hugging Face ``save_to_disk`` folder are read by ``hf``,
  and every other file by the reader registered for its suffix.

Readers of whole sources (``directory``, ``hf``, ``chat``: ``seed_readers_*.py``) live in their
own modules, so their dependencies are imported only when a seed needs them.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from gristmill.config.registry import SeedReaderType, get_registry, resolve_implementation
from gristmill.errors import SeedDatasetError
from gristmill.storage.tables import drop_pandas_index

SeedFileReader = Callable[..., pa.Table]
#: What a reader is given: a local path, or the source string itself when it is a URL (``hf://...``).
SeedSource = Path | str

HF_SCHEME = "hf://"
# A folder written by ``datasets``' save_to_disk: a Dataset, or a DatasetDict of split folders.
_HF_FOLDER_MARKERS = (("state.json", "dataset_info.json"), ("dataset_dict.json",))


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
                               "(or name a reader with the seed's `reader`, or install a plugin that registers "
                               "a seed reader for it)")
    return _resolve(entry)


def named_seed_reader(name: str) -> SeedFileReader:
    """The reader registered as ``name``; SeedDatasetError listing the registered names if none."""
    readers = get_registry().seed_readers()
    entry = readers.get(name)
    if entry is None:
        raise SeedDatasetError(f"no seed reader named {name!r}; registered readers: {', '.join(sorted(readers))} "
                               "(a plugin may register more, see docs/plugins.md)")
    return _resolve(entry)


def _resolve(entry: SeedReaderType) -> SeedFileReader:
    read = resolve_implementation(entry.read, what=f"seed reader {entry.name!r} ({entry.read!r})",
                                  source=entry.source, error=SeedDatasetError)
    if not callable(read):
        raise SeedDatasetError(f"seed reader {entry.name!r} ({entry.source}) is not callable: {read!r}")
    return cast(SeedFileReader, read)


def whole_source_reader(source: str, reader: str | None = None) -> str | None:
    """The reader that reads ``source`` in one call, or None when it is read file by file.

    A named ``reader`` reads any source but a glob (a glob's files are read one by one, each by
    that reader); without one, ``hf://`` paths and ``save_to_disk`` folders are read by ``hf``.
    """
    if reader is not None:
        return None if is_glob(source) else reader
    if source.startswith(HF_SCHEME) or is_hf_folder(Path(source)):
        return "hf"
    return None


def is_glob(source: str) -> bool:
    """True when ``source`` is a glob pattern (``data/*.parquet``)."""
    return any(ch in source for ch in "*?[")


def is_hf_folder(path: Path) -> bool:
    """True for a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and any(all((path / name).is_file() for name in names) for names in _HF_FOLDER_MARKERS)


def read_seed_source(source: str, *, reader: str, options: Mapping[str, Any] | None = None) -> pa.Table:
    """A whole source (file, directory or URL) through the reader named ``reader``, with its options."""
    target: SeedSource = source if "://" in source else Path(source)
    return _read(named_seed_reader(reader), target, reader, options or {})


def read_seed_file(path: Path, *, reader: str | None = None, options: Mapping[str, Any] | None = None) -> pa.Table:
    """One seed file through the reader named ``reader``, or else the one registered for its suffix;
    SeedDatasetError naming the file on failure."""
    read = named_seed_reader(reader) if reader is not None else seed_file_reader(path)
    return _read(read, path, reader or reader_name(path) or "?", options or {})


def _read(read: SeedFileReader, target: SeedSource, name: str, options: Mapping[str, Any]) -> pa.Table:
    _check_options(read, name, options)
    try:
        table = read(target, **options)
    except (pa.ArrowException, OSError, ValueError) as exc:
        what = "file " if isinstance(target, Path) and target.is_file() else ""
        raise SeedDatasetError(f"cannot read seed {what}{str(target)!r} (reader {name!r}): {exc}") from None
    if not isinstance(table, pa.Table):
        raise SeedDatasetError(f"the seed reader {name!r} of {str(target)!r} returned {type(table).__name__}, not "
                               "a pyarrow.Table")
    return table


def _check_options(read: SeedFileReader, name: str, options: Mapping[str, Any]) -> None:
    """Unknown options are a SeedDatasetError listing the reader's keyword parameters."""
    if not options:
        return
    try:
        params = list(inspect.signature(read).parameters.values())[1:]  # the first one is the source
    except (TypeError, ValueError):  # no signature to check (a builtin): the reader checks its own
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SeedDatasetError(f"seed reader {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                               f"{', '.join(accepted) or 'none'} (see docs/seeds.md)")


def table_digest(table: pa.Table) -> str:
    """sha256 of a table's schema and values (Arrow IPC of one record batch): the content digest of
    a source read whole, so it follows file contents and names, never modification times."""
    sink = pa.BufferOutputStream()
    combined = table.combine_chunks()
    with pa.ipc.new_stream(sink, combined.schema) as writer:
        if combined.num_rows:
            writer.write_table(combined, max_chunksize=combined.num_rows)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()
