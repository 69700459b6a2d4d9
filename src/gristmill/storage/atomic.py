"""Crash-safe writes: temp file with a unique name, fsync, ``os.replace``, fsync the directory.

A reader sees either the old file or the new one, never a torn write, even after SIGKILL
or power loss.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class WrittenFile:
    """What was written: size and content digests, recorded in metadata.

    ``crc32`` is what a reuse checks by default (cheap); ``sha256`` what ``verify`` checks.
    """

    path: Path
    num_bytes: int
    sha256: str
    crc32: str | None = None


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A unique hidden temp name beside ``path`` (never shared by two writers).

    The writer's pid is part of the name, so :func:`remove_orphan_temp_files` can tell a temp
    file left by a killed writer from one being written right now.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


# Exactly what temp_path_for makes: ``.<name>.<pid>.<8 hex>.tmp``.
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def remove_orphan_temp_files(directory: Path, *, skip: tuple[str, ...] = (".trash",)) -> list[Path]:
    """Remove temp files that a killed writer left under ``directory``; returns them.

    Call it with the directory lock held. Only names :func:`temp_path_for` makes are touched,
    and only when their writer (the pid in the name) is no longer alive: a file written now by
    a live process, even one not holding the lock (``load_analysis``, an export), is left alone.
    """
    removed: list[Path] = []
    for parent, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            match = _TEMP_NAME.fullmatch(name)
            if match and not _process_alive(int(match["pid"])):
                path = Path(parent) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process (or unknowable): leave the file
    return True


def write_bytes_atomic(path: Path, data: bytes) -> WrittenFile:
    """Write ``data`` to ``path`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return WrittenFile(path=path, num_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                       crc32=crc32_hex(data))


def write_json_atomic(path: Path, value: Any) -> WrittenFile:
    """Write ``value`` as indented JSON, atomically."""
    return write_bytes_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, default=str).encode())


def write_text_atomic(path: Path, text: str) -> WrittenFile:
    """Write ``text`` (UTF-8), atomically."""
    return write_bytes_atomic(path, text.encode())


def write_parquet_atomic(path: Path, table: pa.Table, *, compression: str = "zstd") -> WrittenFile:
    """Serialise ``table`` to parquet in memory, then write it atomically.

    Serialising in memory first gives the sha256 for free and keeps a half-written file from
    ever carrying the final name.
    """
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=compression)
    return write_bytes_atomic(path, buffer.getvalue())


def crc32_hex(data: bytes, value: int = 0) -> str:
    """CRC-32 of ``data`` as 8 hex digits (continuing from ``value``)."""
    return f"{zlib.crc32(data, value) & 0xFFFFFFFF:08x}"


def crc32_file(path: Path, *, chunk_size: int = 1 << 22) -> str:
    """CRC-32 of a file's bytes, 8 hex digits: the cheap check of a reused file (see
    ``bench/bench_verify.py`` for what it costs beside sha256 and beside generating the data)."""
    value = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            value = zlib.crc32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def file_digests(path: Path, *, chunk_size: int = 1 << 22) -> tuple[str, str]:
    """(sha256, crc32) of a file's bytes in one read, for recording a file written by others."""
    digest, value = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
            value = zlib.crc32(chunk, value)
    return digest.hexdigest(), f"{value & 0xFFFFFFFF:08x}"


def sha256_file(path: Path, *, chunk_size: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
