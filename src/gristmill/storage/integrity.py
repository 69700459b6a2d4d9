"""Is a file still what its record says? The one check every reuse goes through.

A record names a file with its size, row count (parquet footer), CRC-32 and sha256. Reuse
checks, cheapest first: the file exists, its size, the footer's row count, then its bytes
against the CRC-32 (or, for records written before CRC-32 was recorded, the sha256). Under
``full=True`` (``verify=True``, the CLI's ``--verify``) the sha256 is compared as well.

Side files (the images of image columns, ``side_file_problem``) have no footer and can be large:
a reuse checks that each exists with its recorded size; its CRC-32 and sha256 are compared only
under ``full``. A truncated or deleted image is caught by every reuse, a same-size edit only
by ``verify``.

Why checksum by default at all: a same-size edit (a flipped byte, a file copied over another
of equal size) passes size and footer checks, and reusing it would hand on wrong rows without
a word. ``bench/bench_verify.py`` measures the cost: reading a file once, at memory speed,
which is small beside generating it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.storage.atomic import crc32_file, file_digests, sha256_file


class RecordedFile(Protocol):
    """What a metadata record says about one file (``FileRecord``, a workflow ``OutputFile``)."""

    @property
    def rows(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def crc32(self) -> str | None: ...


class RecordedSideFile(Protocol):
    """What a metadata record says about a file that is not parquet (``SideFile``)."""

    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def crc32(self) -> str: ...


def footer_rows(path: Path) -> int | None:
    """Rows in a parquet file's footer; None when the footer cannot be read."""
    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError):
        return None


def file_problem(path: Path, record: RecordedFile, *, full: bool = False) -> str | None:
    """Why ``path`` is not the file ``record`` describes, as a phrase to follow its name
    ("missing", "truncated or altered (...)"); None when it is that file."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != record.bytes:
        return f"truncated or altered ({size} bytes, {record.bytes} recorded)"
    rows = footer_rows(path)
    if rows != record.rows:
        found = "its parquet footer is unreadable" if rows is None else f"its footer holds {rows} rows"
        return f"corrupt or altered ({found}, {record.rows} recorded)"
    if record.crc32 is not None and crc32_file(path) != record.crc32:
        return "altered (same size, content changed: checksum mismatch)"
    if (full or record.crc32 is None) and sha256_file(path) != record.sha256:
        return "altered (same size, content changed: sha256 mismatch)"
    return None


def side_file_problem(path: Path, record: RecordedSideFile, *, full: bool = False) -> str | None:
    """Like :func:`file_problem` for a file without rows (an image): existence and size always,
    CRC-32 and sha256 (one read) only under ``full``, since reading every image would make a
    plain reuse as slow as a verify."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != record.bytes:
        return f"truncated or altered ({size} bytes, {record.bytes} recorded)"
    if not full:
        return None
    sha256, crc32 = file_digests(path)
    if crc32 != record.crc32:
        return "altered (same size, content changed: checksum mismatch)"
    if sha256 != record.sha256:
        return "altered (same size, content changed: sha256 mismatch)"
    return None


def describe_file_problem(path: Path, problem: str) -> str:
    """``<path> is <problem>``, said of a file a record claims as complete."""
    return f"{path} is recorded as complete but missing" if problem == "missing" else f"{path} is {problem}"
