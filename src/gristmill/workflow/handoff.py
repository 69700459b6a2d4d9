"""The seed a stage reads: exactly the files its upstream stage recorded, nothing else.

A stage's seed source is a path (``SeedConfig.source``: a file, glob or directory). Handing on
the upstream output *directory* would mix in whatever else lies there (a
``batch_00001 - Copy.parquet``, a ``backup/`` folder, another run's leftovers) without a word,
and the rows a stage is built from would not be the rows its fingerprint describes. So the
runner links exactly the recorded files, in recorded order, into a directory of its own,
``<workflow>/.handoff/<stage directory>/part-NNNNN.parquet``, and seeds the stage from that.

Hard links cost nothing and keep the bytes even if the upstream file is replaced later; across
filesystems (an override outside the workflow directory) a symbolic link is made instead, and
where neither is possible, a copy. The directory is rebuilt every time the stage runs or
resumes, under the workflow lock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

HANDOFF_DIR = ".handoff"


def handoff_directory(workflow_dir: Path, stage_directory: str) -> Path:
    """Where the seed files of the stage in ``stage_directory`` are linked."""
    return workflow_dir / HANDOFF_DIR / stage_directory


def link_handoff(files: Sequence[Path], target: Path) -> Path:
    """Make ``target`` hold exactly ``files`` (as ``part-NNNNN.parquet``, in order); returns it.

    Everything in ``target`` is a link or copy made here, so clearing it loses nothing.
    """
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for number, source in enumerate(files):
        _link(source.resolve(), target / f"part-{number:05d}.parquet")
    return target


def _link(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
        return
    except OSError:
        pass  # another filesystem, or links not allowed there
    try:
        os.symlink(source, destination)
    except OSError:
        shutil.copy2(source, destination)
