"""A stage's selected output: output processors, the ``on_success`` callback, file records.

After a stage's dataset is complete:

1. ``output_processors`` run batch by batch over the main parquet files, each feeding the
   next; processor ``p`` writes ``output-processors/<p>/batch_NNNNN.parquet``. The last
   one's files are the stage output (``output="final"``).
2. ``output="processor:<name>"`` selects a named processor dataset instead: an output
   processor's directory, or a schema_transform of the stage config
   (``processors-files/<name>/``).
3. ``on_success(stage_dir)`` may return a parquet file or directory that replaces the
   selection (filtering, expanding, reshaping). Output from outside the stage directory is
   copied into ``callback-outputs/`` so the workflow directory holds everything it needs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.config.processors import Processor, SchemaTransformProcessor
from gristmill.engine.processors import columns_to_drop, schema_transform
from gristmill.errors import ConfigError, WorkflowError
from gristmill.storage.atomic import file_digests, write_parquet_atomic
from gristmill.storage.layout import PARQUET_DIR, PROCESSORS_DIR, batch_file_name, move_to_trash
from gristmill.storage.metadata import DatasetMetadata
from gristmill.storage.tables import read_parquet_checked, read_parquet_metadata_checked
from gristmill.workflow.metadata import OutputFile, stored_path
from gristmill.workflow.observe import parquet_output_files
from gristmill.workflow.stage import StageDefinition

OUTPUT_PROCESSORS_DIR = "output-processors"
CALLBACK_OUTPUTS_DIR = "callback-outputs"


def clear_post_processing(stage_dir: Path, trash_dir: Path) -> None:
    """Move output-processor and callback results into ``trash_dir`` (they are rebuilt after every
    run or resume; moved, not deleted, as a callback may have left files of its own there)."""
    for name in (OUTPUT_PROCESSORS_DIR, CALLBACK_OUTPUTS_DIR):
        if (stage_dir / name).exists():
            move_to_trash(stage_dir / name, trash_dir / stage_dir.name)


def run_output_processors(stage: StageDefinition, stage_dir: Path,
                          batch_files: Sequence[Path]) -> dict[str, list[Path]]:
    """Apply the stage's output processors, in order, to every main batch file; returns the files
    each processor wrote, in order (exactly those: never whatever else lies in its directory)."""
    root = stage_dir / OUTPUT_PROCESSORS_DIR
    written: dict[str, list[Path]] = {proc.name: [] for proc in stage.output_processors}
    if not written:
        return written
    for index, path in enumerate(batch_files):
        table = read_parquet_checked(path)
        for proc in stage.output_processors:
            table = _apply(stage, proc, table)
            written[proc.name].append(write_parquet_atomic(root / proc.name / batch_file_name(index), table).path)
    return written


def own_output_files(stage: StageDefinition, stage_dir: Path, dataset: DatasetMetadata,
                     processed: Mapping[str, list[Path]]) -> list[Path]:
    """The files of the stage's selected output before any callback, from what was recorded or
    written (see ``own_output_path`` for which output is selected)."""
    wanted = stage.selected_processor
    if wanted is not None and wanted in processed:
        return processed[wanted]
    if wanted is not None:  # a schema_transform of the stage config
        return [stage_dir / b.processor_files[wanted].file for b in dataset.completed_batches
                if wanted in b.processor_files]
    if stage.output_processors:
        return processed[stage.output_processors[-1].name]
    return [stage_dir / b.file for b in dataset.completed_batches]


def _apply(stage: StageDefinition, proc: Processor, table: pa.Table) -> pa.Table:
    if isinstance(proc, SchemaTransformProcessor):
        return schema_transform(table, proc)
    try:
        drop = columns_to_drop([proc], table.column_names)
    except ConfigError as exc:
        raise WorkflowError(f"stage {stage.name!r}: output {exc}") from None
    return table.drop_columns(drop)


def own_output_path(stage: StageDefinition, stage_dir: Path) -> Path:
    """The stage's selected output before any callback (see the module docstring)."""
    wanted = stage.selected_processor
    output_names = [p.name for p in stage.output_processors]
    if wanted is not None:
        parent = OUTPUT_PROCESSORS_DIR if wanted in output_names else PROCESSORS_DIR
        return stage_dir / parent / wanted
    if output_names:
        return stage_dir / OUTPUT_PROCESSORS_DIR / output_names[-1]
    return stage_dir / PARQUET_DIR


def run_callback(stage: StageDefinition, stage_dir: Path) -> tuple[Path, list[tuple[Path, int]]]:
    """Call ``on_success(stage_dir)``; its output (copied inside the stage directory) and its
    parquet files with their row counts (each footer is read once, here)."""
    if stage.on_success is None:
        raise WorkflowError(f"internal error: stage {stage.name!r} has no on_success callback")
    try:
        returned = stage.on_success(stage_dir)
    except Exception as exc:  # user code: report it with the stage it belongs to
        raise WorkflowError(f"stage {stage.name!r}: on_success callback failed: {type(exc).__name__}: {exc}") \
            from exc
    if not isinstance(returned, str | os.PathLike):
        raise WorkflowError(f"stage {stage.name!r}: on_success must return the path of a parquet file or "
                            f"directory, got {returned!r}")
    path = Path(returned)
    files = check_parquet_output(stage, path)
    if path.resolve().is_relative_to(stage_dir.resolve()):
        return path, files
    target = stage_dir / CALLBACK_OUTPUTS_DIR / path.name
    copied: list[tuple[Path, int]] = []
    for source, rows in files:
        destination = target / source.relative_to(path) if path.is_dir() else target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        copied.append((destination, rows))
    return target, copied


def check_parquet_output(stage: StageDefinition, path: Path) -> list[tuple[Path, int]]:
    """The parquet files of a callback output with their rows; ``WorkflowError`` naming stage and path
    if unusable."""
    if not path.exists():
        raise WorkflowError(f"stage {stage.name!r}: on_success output {path} does not exist; the callback must "
                            "write it before returning its path")
    files = parquet_output_files(path)
    if not files:
        raise WorkflowError(f"stage {stage.name!r}: on_success output {path} is not a parquet file or a "
                            "directory of parquet files")
    counted: list[tuple[Path, int]] = []
    for file in files:
        try:
            counted.append((file, pq.ParquetFile(file).metadata.num_rows))
        except (pa.ArrowException, OSError) as exc:
            raise WorkflowError(f"stage {stage.name!r}: on_success output {file} is not readable parquet "
                                f"({exc})") from None
    return counted


def output_file_records(files: Sequence[Path], workflow_dir: Path,
                        rows: Sequence[int] | None = None) -> list[OutputFile]:
    """Rows (from footers, unless already known), size and sha256 of every output file, paths in stored form."""
    counts = list(rows) if rows is not None else [read_parquet_metadata_checked(path).num_rows for path in files]
    records = []
    for path, count in zip(files, counts, strict=True):
        sha256, crc32 = file_digests(path)
        records.append(OutputFile(file=stored_path(path, workflow_dir), rows=count, bytes=path.stat().st_size,
                                  sha256=sha256, crc32=crc32))
    return records
