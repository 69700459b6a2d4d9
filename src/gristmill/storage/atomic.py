"""Crash-safe writes: temp file with a unique name, fsync, ``os.replace``, fsync the directory.

A reader sees either the old file or the new one, never a torn write, even after SIGKILL
or power loss.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class WrittenFile:
    """What was written: size and content digest, recorded in metadata."""

    path: Path
    num_bytes: int
    sha256: str


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
    """A unique hidden temp name beside ``path`` (never shared by two writers)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


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
    return WrittenFile(path=path, num_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


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


def sha256_file(path: Path, *, chunk_size: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
