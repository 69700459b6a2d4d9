"""``gristmill clean``: empty a workflow's trash, or remove a dataset's leftover fresh starts.

A stage that reruns, post-processing output that is rebuilt and unreadable workflow metadata
are moved into ``<workflow>/.trash/`` rather than deleted (``storage.layout.move_to_trash``), so
nothing a run replaces is lost by accident. A dataset whose config changed (or ``resume=never``)
starts fresh beside the old one, in ``<name>_<timestamp>``, deleting nothing. This is the one
place that deletes either, on request, under the directory's lock so no run is writing there
meanwhile. Before a leftover dataset goes, its response cache is merged into the kept dataset's,
so no answer that was paid for is lost.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gristmill.errors import ArtifactError
from gristmill.llm.cache import ResponseCache
from gristmill.storage.layout import METADATA_FILE, TRASH_DIR, DatasetLayout, earlier_fresh_starts
from gristmill.storage.lock import DirectoryLock


@dataclass(frozen=True)
class TrashEntry:
    """One thing a run moved aside: its path and size on disk."""

    path: Path
    num_bytes: int


def trash_entries(workflow_dir: Path) -> list[TrashEntry]:
    """What ``<workflow_dir>/.trash`` holds, oldest name first (reads only)."""
    trash = Path(workflow_dir) / TRASH_DIR
    if not trash.is_dir():
        return []
    return [TrashEntry(path, _size(path)) for path in sorted(trash.iterdir())]


def empty_trash(workflow_dir: Path) -> list[TrashEntry]:
    """Delete everything in ``<workflow_dir>/.trash`` under the workflow lock; returns what went."""
    workflow_dir = Path(workflow_dir)
    if not workflow_dir.is_dir():
        raise ArtifactError(f"{workflow_dir} is not a directory; pass a workflow directory")
    with DirectoryLock(workflow_dir):
        entries = trash_entries(workflow_dir)
        for entry in entries:
            if entry.path.is_dir() and not entry.path.is_symlink():
                shutil.rmtree(entry.path)
            else:
                entry.path.unlink()
    return entries


def leftover_runs(dataset_dir: Path) -> list[TrashEntry]:
    """The ``<name>_<timestamp>`` fresh starts beside a dataset directory, oldest first (reads only)."""
    return [TrashEntry(path, _size(path)) for path in reversed(earlier_fresh_starts(Path(dataset_dir), limit=None))]


def remove_leftover_runs(dataset_dir: Path) -> list[TrashEntry]:
    """Delete the fresh starts beside ``dataset_dir``, each under its own lock, after merging its
    response cache into ``dataset_dir``'s; returns what went. ``dataset_dir`` must hold a dataset."""
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / METADATA_FILE).is_file():
        raise ArtifactError(f"{dataset_dir} holds no dataset ({METADATA_FILE} is missing); pass the dataset "
                            "directory whose leftover fresh starts should go")
    entries = leftover_runs(dataset_dir)
    kept_cache = DatasetLayout(dataset_dir).response_cache_path
    with DirectoryLock(dataset_dir):
        for entry in entries:
            with DirectoryLock(entry.path):
                cache = DatasetLayout(entry.path).response_cache_path
                if cache.is_file():
                    with ResponseCache(kept_cache) as kept:
                        kept.import_from(cache)
            shutil.rmtree(entry.path)
    return entries


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())
