"""The response cache on a cluster: one shard file per batch, merged by the driver.

Workers never write the main cache (one SQLite file must not be shared by processes over a
network filesystem). A batch built on a Ray worker reads hits from the main cache, opened
read-only, and from its own shard ``<dataset>/cache-shards/batch_NNNNN.sqlite``, and commits
each new answer to the shard as it arrives (the same ``ResponseCache``). The driver merges a
batch's shard into the main cache when it commits the batch, then deletes it; a run first
merges the shards a killed worker or driver left behind. A retried batch finds the answers
its killed attempt stored in the same shard: a kill re-pays only the requests in flight.
"""

from __future__ import annotations

import contextlib
import sqlite3
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gristmill.errors import ArtifactError
from gristmill.llm.cache import ResponseCache

SHARD_DIR = "cache-shards"


def shard_path(dataset_dir: Path, batch_index: int) -> Path:
    return dataset_dir / SHARD_DIR / f"batch_{batch_index:05d}.sqlite"


def import_shard(cache: ResponseCache, shard: Path) -> int:
    """Copy ``shard``'s answers into ``cache`` (none when there is no shard); returns how many were new."""
    if not shard.is_file():
        return 0
    try:
        return cache.import_from(shard)
    except ArtifactError as exc:  # a shard cut short by a crash only means paying again
        if not _is_blank(shard):
            warnings.warn(f"not reusing answers from {shard}: {exc}", stacklevel=2)
        return 0


def _is_blank(shard: Path) -> bool:
    """True for a shard with no table at all: its batch was cancelled (or killed) while it was
    being created, so it holds no answer and its loss is nothing to warn about."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(shard.absolute()))}?mode=ro", uri=True)) as db:
            return db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None
    except sqlite3.Error:
        return False  # not SQLite: damaged, so the warning stands


def remove_shard(shard: Path) -> None:
    for path in (shard, shard.with_name(shard.name + "-wal"), shard.with_name(shard.name + "-shm")):
        path.unlink(missing_ok=True)


def merge_shard(cache: ResponseCache, shard: Path) -> int:
    """Copy ``shard``'s answers into ``cache`` and delete the shard; returns how many were new."""
    copied = import_shard(cache, shard)
    remove_shard(shard)
    return copied


def merge_leftover_shards(cache: ResponseCache, dataset_dir: Path) -> int:
    """Merge every shard an interrupted run left in ``dataset_dir``; returns the answers copied."""
    directory = dataset_dir / SHARD_DIR
    if not directory.is_dir():
        return 0
    copied = sum(merge_shard(cache, shard) for shard in sorted(directory.glob("batch_*.sqlite")))
    for stray in directory.glob("batch_*.sqlite-*"):  # -wal/-shm of a shard whose main file is gone
        stray.unlink(missing_ok=True)
    return copied


class ShardedResponseCache(ResponseCache):
    """A worker's response cache: hits from the main cache (read-only) and the current batch's
    shard, new answers into the shard. ``open_batch`` / ``close_batch`` around every batch
    (a worker builds one batch at a time). Stands in where generators expect a ``ResponseCache``."""

    def __init__(self, main: Path | None) -> None:  # no super().__init__: this object owns no file
        self.path = main or Path()
        self._main_path = main
        self._main: ResponseCache | None = None
        self._shard: ResponseCache | None = None

    def open_batch(self, shard: Path) -> None:
        self.close_batch()
        if self._main_path is not None and self._main_path.is_file():
            self._main = ResponseCache(self._main_path, mode="readonly")
        self._shard = ResponseCache(shard)

    def close_batch(self) -> None:
        for cache in (self._main, self._shard):
            if cache is not None:
                cache.close()
        self._main = self._shard = None

    def _current(self) -> ResponseCache:
        if self._shard is None:
            raise RuntimeError("internal error: the response cache was used outside a batch")
        return self._shard

    def get(self, key: str) -> Any | None:
        found = self.get_many([key])
        return found.get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        shard = self._current()
        found = self._main.get_many(keys) if self._main is not None else {}
        missing = [key for key in keys if key not in found]
        if missing:
            found.update(shard.get_many(missing))
        return found

    def put(self, key: str, value: Any, *, column: str = "") -> None:
        self._current().put(key, value, column=column)

    def import_from(self, path: str | Path) -> int:
        raise RuntimeError("internal error: a worker's response cache imports nothing")

    def stats(self) -> dict[str, Any]:
        return self._current().stats()

    def clear(self) -> int:
        raise RuntimeError("internal error: a worker's response cache is never cleared")

    def close(self) -> None:
        self.close_batch()
