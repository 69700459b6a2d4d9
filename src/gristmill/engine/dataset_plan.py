"""The dataset planner: what ``create()`` does with what an earlier run left on disk.

Decide, then act. :func:`observe_dataset` is the only step that reads stored state (metadata,
batch files' sizes and footers, earlier fresh starts); :func:`plan_dataset` is a pure function
of that observation, the config's identity, the requested rows and the resume mode, and
returns a :class:`DatasetDecision` with the reason a user reads. ``DatasetRun`` executes a
decision and never decides again. Both run under the dataset directory's lock.

=================  ===============================================================
action             when
=================  ===============================================================
FRESH              the directory is empty: start there
REUSE              a matching run is complete with the rows asked for: write nothing
RESUME             a matching run stopped early: build its missing batches
GROW               a matching complete run, more rows asked for: append batches
FRESH_SIBLING      the stored run cannot be continued (NEVER, or a mismatch under
                   IF_POSSIBLE): start in ``<name>_<timestamp>``, deleting nothing
=================  ===============================================================

Under IF_POSSIBLE an earlier fresh start (``<name>_<timestamp>``, newest first) that matches
is continued; a fresh start imports the response caches of every run it looked at, so only
requests whose inputs changed are paid again. ALWAYS raises instead of starting fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from gristmill.config.dataset import DatasetConfig
from gristmill.config.fingerprint import FingerprintComponents, describe_changes
from gristmill.config.run import ResumeMode, RunConfig
from gristmill.engine.seeds import seed_digest
from gristmill.errors import ArtifactError, ResumeError
from gristmill.storage.integrity import describe_file_problem, file_problem, side_file_problem
from gristmill.storage.layout import (
    DROPPED_DIR,
    DROPPED_ROWS_DIR,
    PARQUET_DIR,
    PROCESSORS_DIR,
    DatasetLayout,
    batch_file_name,
    earlier_fresh_starts,
    fresh_sibling,
)
from gristmill.storage.metadata import BatchRecord, DatasetMetadata, FileRecord


class DatasetAction(StrEnum):
    FRESH = "fresh"
    REUSE = "reuse"
    RESUME = "resume"
    GROW = "grow"
    FRESH_SIBLING = "fresh_sibling"


@dataclass(frozen=True)
class DatasetIdentity:
    """What a stored run must match to be continued: the config fingerprint (with the components
    that let a change be named) and the seed dataset's content digest."""

    fingerprint: str
    components: FingerprintComponents
    seed_digest: str | None


def dataset_identity(config: DatasetConfig, *, include_seed_source: bool = True) -> DatasetIdentity:
    """Fingerprint plus seed content digest of ``config`` (reads seed files to hash them)."""
    digest = seed_digest(config.seed) if config.seed is not None and include_seed_source else None
    return DatasetIdentity(config.fingerprint(include_seed_source=include_seed_source),
                           config.fingerprint_components(include_seed_source=include_seed_source), digest)


@dataclass(frozen=True)
class StoredRun:
    """One directory as found: its metadata, or why it cannot be continued."""

    path: Path
    empty: bool = False
    metadata: DatasetMetadata | None = None
    problem: str | None = None  # unreadable metadata, missing or altered batch file, not a dataset
    has_cache: bool = False


@dataclass(frozen=True)
class DatasetObservation:
    """The dataset directory and earlier fresh starts of the same name, newest first."""

    main: StoredRun
    earlier: tuple[StoredRun, ...] = ()
    free_sibling: Path | None = None  # where a fresh start beside a non-empty directory would go


@dataclass(frozen=True)
class DatasetDecision:
    """What ``create()`` does, where, and why."""

    action: DatasetAction
    path: Path
    reason: str
    warning: str | None = None
    import_caches: tuple[Path, ...] = ()  # earlier answers a fresh run starts from
    batches_missing: int = 0

    @property
    def continues(self) -> bool:
        return self.action in (DatasetAction.REUSE, DatasetAction.RESUME, DatasetAction.GROW)


@dataclass(frozen=True)
class DatasetRequest:
    """What the user asked for: rows, run options, mode."""

    num_records: int
    run_config: RunConfig
    mode: ResumeMode = ResumeMode.IF_POSSIBLE


# -- observe ---------------------------------------------------------------------------------
def observe_dataset(root: Path, identity: DatasetIdentity, *, look_for_earlier: bool = True,
                    verify: bool = False) -> DatasetObservation:
    """Read what is stored under ``root`` (and ``<root>_<timestamp>`` siblings when asked).

    Batch files are verified (size, parquet footer row count, CRC-32; the sha256 too with
    ``verify``), and the image files they name (size; CRC-32 and sha256 with ``verify``), only
    for runs whose fingerprint matches: a run that could not be continued anyway is not worth
    the reads.
    """
    main = observe_run(root, identity, verify=verify)
    if main.empty:
        return DatasetObservation(main)
    earlier = tuple(observe_run(p, identity, verify=verify) for p in earlier_fresh_starts(root)) \
        if look_for_earlier else ()
    return DatasetObservation(main, earlier, free_sibling=fresh_sibling(root))


def observe_run(root: Path, identity: DatasetIdentity, *, verify: bool = False) -> StoredRun:
    layout = DatasetLayout(root)
    if layout.is_empty():
        return StoredRun(root, empty=True)
    has_cache = layout.response_cache_path.is_file()
    if not layout.metadata_path.exists():
        return StoredRun(root, problem=f"{root} is not empty but has no metadata.json, so it is not a gristmill "
                                       "dataset; choose another dataset_name or move the directory away",
                         has_cache=has_cache)
    try:
        meta = DatasetMetadata.load(layout.metadata_path)
        if meta.fingerprint == identity.fingerprint:
            verify_batches(meta, layout, check_hashes=verify)
    except ArtifactError as exc:
        return StoredRun(root, problem=str(exc), has_cache=has_cache)
    return StoredRun(root, metadata=meta, has_cache=has_cache)


def verify_batches(meta: DatasetMetadata, layout: DatasetLayout, *, check_hashes: bool = False) -> None:
    """Raise ArtifactError naming the first recorded batch file that is missing, altered or not
    where its record says (see :func:`check_batch_names`).

    Each file is checked by size, footer row count and CRC-32 (the sha256 where no CRC-32 was
    recorded); ``check_hashes`` compares the sha256 of every file too. The image files a batch
    names (``BatchRecord.image_files``) are checked by size, and by CRC-32 and sha256 only with
    ``check_hashes``: images can be large, and a reuse must stay cheap.
    """
    check_batch_names(meta, layout)
    for record in meta.completed_batches:
        for rec, _ in _named_files(record):
            problem = file_problem(layout.root / rec.file, rec, full=check_hashes)
            if problem is not None:
                raise ArtifactError(f"{describe_file_problem(layout.root / rec.file, problem)}; {_VERIFY_ADVICE}")
    damaged = image_problem(meta, layout.root, full=check_hashes)
    if damaged is not None:
        path, problem, index = damaged
        raise ArtifactError(f"{describe_file_problem(path, problem)} (an image of batch {index}); {_VERIFY_ADVICE}")


def image_problem(meta: DatasetMetadata, root: Path, *, full: bool) -> tuple[Path, str, int] | None:
    """(path, problem, batch index) of the first image file the batches of ``meta`` name that is
    missing or truncated (or, with ``full``, altered); None when every one is as recorded."""
    for record in meta.completed_batches:
        for image in record.image_files:
            problem = side_file_problem(root / image.file, image, full=full)
            if problem is not None:
                return root / image.file, problem, record.index
    return None


_VERIFY_ADVICE = "restore it, or rerun with resume=never to regenerate the dataset in a new directory"


def check_batch_names(meta: DatasetMetadata, layout: DatasetLayout) -> None:
    """Every record must name its own file (``parquet-files/batch_NNNNN.parquet`` for batch N,
    each file once): a record pointing at another batch's file would load its rows twice. Image
    files must be relative paths inside the dataset directory, each named by one batch only.
    Reads nothing but the metadata; ArtifactError naming the record otherwise."""
    seen: set[str] = set()
    for record in meta.completed_batches:
        for rec, expected in _named_files(record):
            if rec.file != expected or rec.file in seen:
                raise ArtifactError(f"{layout.metadata_path} is inconsistent: batch {record.index} names "
                                    f"{layout.root / rec.file}, expected {layout.root / expected} (each batch has "
                                    f"its own file); {_VERIFY_ADVICE}")
            seen.add(rec.file)
        for image in record.image_files:
            relative = PurePosixPath(image.file)
            if relative.is_absolute() or ".." in relative.parts or not relative.parts or image.file in seen:
                raise ArtifactError(f"{layout.metadata_path} is inconsistent: batch {record.index} names image "
                                    f"{image.file!r}, which is outside the dataset directory or named by another "
                                    f"record (each row has its own image file); {_VERIFY_ADVICE}")
            seen.add(image.file)


def _named_files(record: BatchRecord) -> list[tuple[FileRecord, str]]:
    """Each file of a batch with the path it must have (relative, POSIX form)."""
    name = batch_file_name(record.index, record.generation)
    files: list[tuple[FileRecord, str]] = [(record, f"{PARQUET_DIR}/{name}")]
    files += [(rec, f"{PROCESSORS_DIR}/{proc}/{name}") for proc, rec in record.processor_files.items()]
    if record.dropped_file is not None:
        files.append((record.dropped_file, f"{DROPPED_DIR}/{name}"))
    if record.dropped_rows_file is not None:
        files.append((record.dropped_rows_file, f"{DROPPED_ROWS_DIR}/{name}"))
    return files


# -- decide ----------------------------------------------------------------------------------
def resume_mismatches(meta: DatasetMetadata, identity: DatasetIdentity, run_config: RunConfig,
                      num_records: int | None = None) -> list[str]:
    """Why ``meta`` cannot be continued with this config and run options (empty: it can)."""
    reasons = []
    if meta.fingerprint != identity.fingerprint:
        reasons.append(f"the config changed ({describe_changes(meta.fingerprint_components, identity.components)})")
    if meta.seed_digest != identity.seed_digest:
        reasons.append("the seed dataset's content changed")
    if meta.valid_filter != run_config.valid_filter:
        reasons.append(f"valid_filter is {run_config.valid_filter!r}, the stored run used {meta.valid_filter!r}")
    if meta.on_failed_rows != run_config.on_failed_rows:
        reasons.append(f"on_failed_rows is {run_config.on_failed_rows!r}, the stored run used {meta.on_failed_rows!r}")
    if run_config.batch_size is not None and meta.batch_size != run_config.batch_size:
        reasons.append(f"batch_size is {run_config.batch_size}, the stored run used {meta.batch_size}")
    if run_config.seed is not None and run_config.seed != meta.run_seed:
        reasons.append(f"seed is {run_config.seed}, the stored run used {meta.run_seed}")
    if num_records is not None and meta.actual_rows > num_records:
        reasons.append(f"it holds {meta.actual_rows} rows, more than the {num_records} requested")
    return reasons


def plan_dataset(observation: DatasetObservation, identity: DatasetIdentity, request: DatasetRequest,
                 ) -> DatasetDecision:
    """Decide from stored state alone (pure). Raises ResumeError / ArtifactError under ALWAYS
    when the stored run cannot be continued, saying why."""
    main, mode = observation.main, request.mode
    if main.empty:
        if mode is ResumeMode.ALWAYS:
            raise ResumeError(f"resume=always but {main.path} holds no dataset to resume; use "
                              "resume=if-possible or never to start one")
        return DatasetDecision(DatasetAction.FRESH, main.path, "no earlier run")
    sibling = observation.free_sibling or main.path.with_name(f"{main.path.name}_new")
    if mode is ResumeMode.NEVER:
        return DatasetDecision(DatasetAction.FRESH_SIBLING, sibling, "resume=never", warning=(
            f"{main.path} already holds data; writing to {sibling} instead (pass resume=if-possible to "
            "continue the existing dataset)"))
    blockers = _blockers(main, identity, request)
    if not blockers:
        return _continue(main, request)
    if mode is ResumeMode.ALWAYS:
        if main.metadata is None:
            raise ArtifactError(blockers[0])
        raise ResumeError(f"cannot resume {main.path}: " + "; ".join(blockers))
    for earlier in observation.earlier:
        if not _blockers(earlier, identity, request):
            decision = _continue(earlier, request)
            return DatasetDecision(decision.action, earlier.path, decision.reason, batches_missing=(
                decision.batches_missing), warning=(f"{main.path} does not match ({'; '.join(blockers)}); "
                                                    f"continuing the matching earlier run in {earlier.path}"))
    caches = tuple(run.path / DatasetLayout(run.path).response_cache_path.name
                   for run in (main, *observation.earlier) if run.has_cache)
    return DatasetDecision(DatasetAction.FRESH_SIBLING, sibling, "; ".join(blockers), import_caches=caches,
                           warning=f"not resuming {main.path} ({'; '.join(blockers)}); starting fresh in {sibling}")


def _blockers(run: StoredRun, identity: DatasetIdentity, request: DatasetRequest) -> list[str]:
    if run.metadata is None:
        return [run.problem or f"{run.path} holds no dataset"]
    return resume_mismatches(run.metadata, identity, request.run_config, request.num_records)


def _continue(run: StoredRun, request: DatasetRequest) -> DatasetDecision:
    meta = run.metadata
    assert meta is not None  # _blockers found none, so metadata was read
    held, wanted = meta.actual_rows, request.num_records
    planned = meta.model_copy(deep=True)
    planned.plan_rows(wanted)
    missing = len(planned.missing_batches())
    target = request.run_config.target_valid_records
    if missing == 0 and target is not None and held < target:  # the run generates more rows until enough pass
        return DatasetDecision(DatasetAction.GROW if meta.status.value == "completed" else DatasetAction.RESUME,
                               run.path, f"holds {held} valid rows, target_valid_records asks for {target}")
    if missing == 0:
        return DatasetDecision(DatasetAction.REUSE, run.path, f"complete with {held} rows")
    if meta.status.value == "completed":
        return DatasetDecision(DatasetAction.GROW, run.path, f"grows from {held} to {wanted} rows",
                               batches_missing=missing)
    return DatasetDecision(DatasetAction.RESUME, run.path,
                           f"{len(meta.completed_batches)} of {planned.num_batches} batches done",
                           batches_missing=missing)
