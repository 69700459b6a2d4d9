"""Read what earlier runs left on disk, for the planner (which does no I/O itself).

Gathering is the only place where the planning step touches the file system: prior
metadata, whether each stage's recorded output is still there with its recorded sizes (and
hashes under ``verify``), how far a cut-off stage's dataset got, the content digest of the
first stage's own seed, and the approved overrides. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.engine.dataset_plan import check_batch_names, image_problem, verify_batches
from gristmill.engine.seeds import seed_digest
from gristmill.errors import ArtifactError, WorkflowError
from gristmill.storage.atomic import sha256_file
from gristmill.storage.integrity import file_problem
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import DatasetMetadata
from gristmill.workflow.metadata import (
    WORKFLOW_METADATA_FILE,
    StageRecord,
    StageStatus,
    WorkflowMetadata,
    load_workflow_metadata,
    resolve_stored,
)
from gristmill.workflow.stage import StageDefinition


@dataclass(frozen=True)
class DatasetSnapshot:
    """How far a stage's dataset got (from its ``metadata.json``), or why it cannot continue."""

    batch_size: int = 0
    run_seed: int = 0
    completed_batches: int = 0
    total_batches: int = 0
    failed_rows: int = 0  # rows with a failed cell, which retry_failed regenerates
    problem: str | None = None


@dataclass(frozen=True)
class StageObservation:
    """What is on disk for one prior stage record."""

    directory_exists: bool
    output_problem: str | None = None
    dataset: DatasetSnapshot | None = None


@dataclass(frozen=True)
class OverrideInput:
    """An approved replacement for a stage's selected output."""

    path: Path
    sha256: str
    rows: int


@dataclass(frozen=True)
class PriorState:
    """Everything the planner knows about earlier runs."""

    metadata: WorkflowMetadata | None
    problem: str | None = None
    stages: Mapping[int, StageObservation] = field(default_factory=dict)
    first_seed_digest: str | None = None  # read with or without usable metadata: an input of stage 0
    seed_digests: Mapping[str, str | None] = field(default_factory=dict)  # of every root stage, by name


def observe_workflow(workflow_dir: Path, name: str, stages: Sequence[StageDefinition], *,
                     verify: bool = False, read_prior: bool = True) -> PriorState:
    """Gather the planner's inputs for ``stages`` from ``workflow_dir``."""
    digests = {stage.name: first_seed_digest([stage]) for stage in stages if not stage.parents}
    first_seed = digests.get(stages[0].name) if stages else None
    if not read_prior:
        return PriorState(metadata=None, first_seed_digest=first_seed, seed_digests=digests)
    loaded = load_workflow_metadata(workflow_dir / WORKFLOW_METADATA_FILE, name)
    if loaded.metadata is None:
        return PriorState(metadata=None, problem=loaded.problem, first_seed_digest=first_seed, seed_digests=digests)
    observed = {record.index: observe_stage(workflow_dir, record, verify=verify)
                for record in loaded.metadata.stages}
    return PriorState(metadata=loaded.metadata, stages=observed, first_seed_digest=first_seed, seed_digests=digests)


def observe_stage(workflow_dir: Path, record: StageRecord, *, verify: bool) -> StageObservation:
    """Check one stage's directory, dataset and recorded output files."""
    stage_dir = resolve_stored(record.directory, workflow_dir)
    if not stage_dir.is_dir():
        return StageObservation(directory_exists=False, output_problem=f"stage directory {record.directory} missing")
    if record.status in (StageStatus.COMPLETED, StageStatus.COMPLETED_EMPTY):
        # A reused stage's results load its dataset metadata, so it must be readable, not only present.
        meta, problem = _load_dataset(stage_dir)
        problem = _output_problem(workflow_dir, record, verify=verify) or problem or (
            _image_problem(stage_dir, meta, verify=verify) if meta is not None else None)
        return StageObservation(directory_exists=True, output_problem=problem,
                                dataset=_snapshot(meta) if meta is not None else None)
    if record.status in (StageStatus.RUNNING, StageStatus.FAILED):
        return StageObservation(directory_exists=True, dataset=_dataset_snapshot(stage_dir, verify=verify))
    return StageObservation(directory_exists=True)


def _output_problem(workflow_dir: Path, record: StageRecord, *, verify: bool) -> str | None:
    """Why the recorded output cannot be handed on as recorded: a file missing or altered
    (checksum always, sha256 under ``verify``), a file named twice, or a total that its files'
    footers do not bear out (a downstream stage would cycle its seed to the claimed rows)."""
    if not record.output_files:
        return "no output files recorded"
    seen: set[str] = set()
    for entry in record.output_files:
        path = resolve_stored(entry.file, workflow_dir)
        if entry.file in seen:
            return f"output {path.name} recorded twice"
        seen.add(entry.file)
        problem = file_problem(path, entry, full=verify)
        if problem is not None:
            return f"output {path.name} {problem}"
    total = sum(entry.rows for entry in record.output_files)
    if record.output_rows != total:
        return f"recorded output_rows {record.output_rows} disagree with its files' {total} rows"
    return None


def _image_problem(stage_dir: Path, meta: DatasetMetadata, *, verify: bool) -> str | None:
    """The first image file of the stage's dataset that is missing or truncated (altered, under
    ``verify``): the stage's output names it, so it cannot be handed on as recorded."""
    damaged = image_problem(meta, stage_dir, full=verify)
    return None if damaged is None else f"image {damaged[0].relative_to(stage_dir).as_posix()} {damaged[1]}"


def _load_dataset(stage_dir: Path, *, verify: bool = False,
                  full: bool = False) -> tuple[DatasetMetadata | None, str | None]:
    """The stage dataset's metadata (its recorded batches checked with ``verify``, their sha256
    too with ``full``), or why it is
    unusable: the first clause of the ``ArtifactError``, which names the file (the advice after
    it is for ``create()`` and does not apply to a stage)."""
    layout = DatasetLayout(stage_dir)
    try:
        meta = DatasetMetadata.load(layout.metadata_path)
        check_batch_names(meta, layout)  # a reused stage's results load these records
        if verify:
            verify_batches(meta, layout, check_hashes=full)
    except ArtifactError as exc:
        return None, str(exc).split(";")[0]
    return meta, None


def _dataset_snapshot(stage_dir: Path, *, verify: bool) -> DatasetSnapshot:
    meta, problem = _load_dataset(stage_dir, verify=True, full=verify)
    if meta is None:
        return DatasetSnapshot(problem=problem)
    return _snapshot(meta)


def _snapshot(meta: DatasetMetadata) -> DatasetSnapshot:
    return DatasetSnapshot(batch_size=meta.batch_size, run_seed=meta.run_seed,
                           completed_batches=len(meta.completed_batches), total_batches=meta.num_batches,
                           failed_rows=sum(b.failed_rows for b in meta.completed_batches))


def first_seed_digest(stages: Sequence[StageDefinition]) -> str | None:
    """Content digest of the first stage's own seed dataset (file bytes or DataFrame), if any
    (called with one root stage at a time for a DAG)."""
    if not stages or stages[0].config.seed is None:
        return None
    return seed_digest(stages[0].config.seed)


def check_overrides(overrides: Mapping[str, str | Path] | None,
                    stages: Sequence[StageDefinition]) -> dict[str, OverrideInput]:
    """Validate every override before any work: known stage, existing readable parquet."""
    names = [s.name for s in stages]
    checked: dict[str, OverrideInput] = {}
    for name, raw_path in (overrides or {}).items():
        if name not in names:
            raise WorkflowError(f"stage_output_overrides names unknown stage {name!r}; stages: {names}")
        checked[name] = _read_override(name, Path(raw_path))
    return checked


def _read_override(name: str, path: Path) -> OverrideInput:
    files = parquet_output_files(path) if path.exists() else []
    if not path.exists():
        raise WorkflowError(f"override for stage {name!r}: {path} does not exist")
    if not files:
        raise WorkflowError(f"override for stage {name!r}: {path} is not a parquet file or a directory of them")
    try:
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (pa.ArrowException, OSError) as exc:
        raise WorkflowError(f"override for stage {name!r}: {path} is not readable parquet ({exc})") from None
    if rows == 0:
        raise WorkflowError(f"override for stage {name!r}: {path} holds no rows")
    digest = sha256_file(files[0]) if len(files) == 1 else _digest_many(files)
    return OverrideInput(path=path.resolve(), sha256=digest, rows=rows)


def _digest_many(files: Sequence[Path]) -> str:
    from gristmill.config.fingerprint import sha256_json

    return sha256_json([sha256_file(f) for f in files])


def parquet_output_files(path: Path) -> list[Path]:
    """A ``.parquet`` file itself, or the sorted parquet files under a directory (hidden ones skipped)."""
    if path.is_file():
        return [path] if path.suffix.lower() in (".parquet", ".pq") else []
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith(".") and p.is_file())
    return []


__all__ = ["DatasetSnapshot", "OverrideInput", "PriorState", "StageObservation", "check_overrides", "first_seed_digest",
           "observe_workflow", "parquet_output_files"]
