"""Where things live inside a dataset directory (see DESIGN.md "On disk")."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gristmill.errors import ConfigError
from gristmill.storage.atomic import fsync_dir

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
PARQUET_DIR = "parquet-files"
PROCESSORS_DIR = "processors-files"
DROPPED_DIR = "dropped-columns"
DROPPED_ROWS_DIR = "dropped-rows"  # rows with a failed cell, under RunConfig(on_failed_rows="drop")
RESPONSE_CACHE_FILE = "response-cache.sqlite"
ANALYSIS_FILE = "analysis.json"
LOCK_FILE = ".gristmill.lock"
TRASH_DIR = ".trash"  # directories moved aside, kept until `gristmill clean`
MAX_NAME_BYTES = 255  # one path component on Linux, macOS and Windows filesystems
# What fresh_sibling appends: "_YYYYmmdd-HHMMSS" and, when that is taken, "-NNN".
SIBLING_SUFFIX_BYTES = len("_20260101-000000-999")


def batch_file_name(index: int, generation: int = 0) -> str:
    """``batch_00007.parquet`` for batch 7; ``batch_00007.r2.parquet`` once ``retry_failed`` has
    rewritten it twice (a rewrite never overwrites the files its committed record names)."""
    return f"batch_{index:05d}.parquet" if generation == 0 else f"batch_{index:05d}.r{generation}.parquet"


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset directory."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metadata_path(self) -> Path:
        return self.root / METADATA_FILE

    @property
    def parquet_dir(self) -> Path:
        return self.root / PARQUET_DIR

    @property
    def processors_dir(self) -> Path:
        return self.root / PROCESSORS_DIR

    @property
    def dropped_dir(self) -> Path:
        return self.root / DROPPED_DIR

    @property
    def response_cache_path(self) -> Path:
        return self.root / RESPONSE_CACHE_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def batch_path(self, index: int, generation: int = 0) -> Path:
        return self.parquet_dir / batch_file_name(index, generation)

    def processor_batch_path(self, processor: str, index: int, generation: int = 0) -> Path:
        return self.processors_dir / processor / batch_file_name(index, generation)

    def dropped_batch_path(self, index: int, generation: int = 0) -> Path:
        return self.dropped_dir / batch_file_name(index, generation)

    def dropped_rows_batch_path(self, index: int, generation: int = 0) -> Path:
        return self.root / DROPPED_ROWS_DIR / batch_file_name(index, generation)

    def is_empty(self) -> bool:
        """True when the directory is missing or holds nothing but a lock file."""
        if not self.root.exists():
            return True
        return all(p.name == LOCK_FILE or p.name.startswith(f"{LOCK_FILE}.") for p in self.root.iterdir())


def check_name_fits(name: str, *, what: str = "name") -> None:
    """``ConfigError`` when ``name`` plus a timestamp suffix would pass the filesystem's limit of
    255 bytes per name: a fresh start or a moved-aside copy is named ``<name>_<timestamp>``, so
    such a name would fail with a bare ``OSError`` only once a run needs that sibling."""
    size = len(os.fsencode(name))
    if size + SIBLING_SUFFIX_BYTES > MAX_NAME_BYTES:
        raise ConfigError(f"{what} {name[:40]!r}... is {size} bytes long; use at most "
                          f"{MAX_NAME_BYTES - SIBLING_SUFFIX_BYTES} bytes (a file name may have {MAX_NAME_BYTES} "
                          f"bytes and gristmill adds up to {SIBLING_SUFFIX_BYTES} for timestamped copies)")


def fresh_sibling(root: Path) -> Path:
    """A new ``<root>_<timestamp>`` path beside ``root`` (``-2``, ``-3``... when taken); a fresh
    start goes there so that nothing under ``root`` is overwritten. Not created here."""
    check_name_fits(root.name, what="directory name")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root.with_name(f"{root.name}_{stamp}"), 1
    while candidate.exists():
        n += 1
        candidate = root.with_name(f"{root.name}_{stamp}-{n}")
    return candidate


def earlier_fresh_starts(root: Path, *, limit: int | None = 5) -> list[Path]:
    """Directories that :func:`fresh_sibling` made beside ``root`` earlier, newest first (at most
    ``limit``; None for all)."""
    pattern = re.compile(rf"{re.escape(root.name)}_(\d{{8}}-\d{{6}})(?:-(\d+))?")
    if not root.parent.is_dir():
        return []
    stamped = [(match[1], int(match[2] or 1), path) for path in root.parent.glob(f"{glob_escape(root.name)}_*")
               if path.is_dir() and (match := pattern.fullmatch(path.name))]
    return [path for _, _, path in sorted(stamped, reverse=True)][:limit]


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped (``[`` ``*`` ``?``)."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def move_to_trash(path: Path, trash_dir: Path) -> Path:
    """Move ``path`` (a file or directory) to ``<trash_dir>/<name>_<timestamp>`` and return where.

    Never deleting is the point: a stage directory that reruns may hold files the user put there,
    and what a run replaces stays recoverable until ``gristmill clean`` empties the trash. A
    rename within one filesystem, so it costs the same for a 10 GB directory as for an empty one.
    """
    trash_dir.mkdir(parents=True, exist_ok=True)
    target = fresh_sibling(trash_dir / path.name)
    os.rename(path, target)
    fsync_dir(trash_dir)
    fsync_dir(path.parent)
    return target
