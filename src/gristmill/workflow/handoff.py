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

A stage with several parents (a DAG) gets one file instead, ``part-00000.parquet``, written
by ``write_joined_handoff``: the seed parent's rows, in order, left-joined with each joined
parent's output on its key column (the joined parent's key must be unique; columns the seed
rows already have are kept from the seed, so a shared ancestor's columns appear once), and one
column per side input holding that parent's whole output as a list of row dicts (at most
``SIDE_INPUT_MAX_ROWS`` rows: every seed row carries it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from gristmill.errors import WorkflowError
from gristmill.storage.atomic import write_parquet_atomic
from gristmill.storage.tables import read_parquet_checked
from gristmill.workflow.stage import SIDE_INPUT_MAX_ROWS

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


def write_joined_handoff(seed_files: Sequence[Path], target: Path, *,
                         joins: Mapping[str, tuple[Sequence[Path], str]],
                         side_inputs: Mapping[str, Sequence[Path]]) -> Path:
    """Make ``target`` hold one file: the seed rows joined with ``joins`` ({parent: (files, key)})
    and carrying ``side_inputs`` ({parent: files}); ``WorkflowError`` names the parent at fault."""
    table = _read(seed_files)
    for parent, (files, key) in joins.items():
        table = left_join(table, _read(files), parent=parent, key=key)
    for parent, files in side_inputs.items():
        table = with_side_input(table, _read(files), parent=parent)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    write_parquet_atomic(target / "part-00000.parquet", table)
    return target


def left_join(seed: pa.Table, other: pa.Table, *, parent: str, key: str) -> pa.Table:
    """``seed`` with the columns of ``other`` it lacks, matched on ``key`` (nulls where no row
    matches); the seed's row order is kept."""
    if key not in seed.column_names:
        raise WorkflowError(f"join key {key!r} is not a column of the seed rows (columns: {seed.column_names}); "
                            f"join parent {parent!r} on a column both outputs have")
    if key not in other.column_names:
        raise WorkflowError(f"join key {key!r} is not a column of parent {parent!r}'s output (columns: "
                            f"{other.column_names}); join on a column both outputs have")
    keys = other.column(key).to_pylist()
    position: dict[object, int] = {}
    for row, value in enumerate(keys):
        if value in position:
            raise WorkflowError(f"join key {key!r} is not unique in parent {parent!r}'s output (value {value!r} "
                                "appears twice); each seed row must match at most one row")
        position[value] = row
    take = pa.array([position.get(value) for value in seed.column(key).to_pylist()], type=pa.int64())
    added = [name for name in other.column_names if name not in seed.column_names]
    for name in added:
        seed = seed.append_column(name, other.column(name).take(take))
    return seed


def with_side_input(seed: pa.Table, side: pa.Table, *, parent: str) -> pa.Table:
    """``seed`` plus a column ``parent`` holding ``side`` as a list of row dicts in every row."""
    if side.num_rows > SIDE_INPUT_MAX_ROWS:
        raise WorkflowError(f"side input {parent!r} has {side.num_rows:,} rows, more than the "
                            f"{SIDE_INPUT_MAX_ROWS:,} a side input may have (every row of the stage carries it); "
                            "join it on a key instead, or filter it first")
    if parent in seed.column_names:
        raise WorkflowError(f"side input {parent!r} would replace the seed column of that name; rename the column "
                            "or the stage")
    struct = pa.struct(list(side.schema))
    value = pa.scalar(side.to_pylist(), type=pa.list_(struct))
    return seed.append_column(parent, pa.repeat(value, seed.num_rows))


def _read(files: Sequence[Path]) -> pa.Table:
    tables = [read_parquet_checked(path) for path in files]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
