"""``gristmill clean``: empty a workflow's trash, where reruns move what they replace.

A stage that reruns, post-processing output that is rebuilt and unreadable workflow metadata
are moved into ``<workflow>/.trash/`` rather than deleted (``storage.layout.move_to_trash``), so
nothing a run replaces is lost by accident. This is the one place that deletes them, on request,
under the workflow lock so no run is moving things in meanwhile.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gristmill.errors import ArtifactError
from gristmill.storage.layout import TRASH_DIR
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


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())
