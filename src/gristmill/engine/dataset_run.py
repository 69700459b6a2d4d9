"""Run one dataset into a directory: lock, write batches atomically, record metadata, resume.

The directory and resume decision are made by the caller (``Mill.create`` or a workflow
stage); this module only executes: "start fresh here" or "continue what is here".
"""

from __future__ import annotations

import contextlib
import secrets
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.config.dataset import DatasetConfig
from gristmill.config.fingerprint import FINGERPRINT_VERSION
from gristmill.config.run import RunConfig
from gristmill.engine.batches import BatchPlan
from gristmill.engine.generators import EngineContext
from gristmill.engine.loop import BackgroundLoop
from gristmill.engine.processors import ProcessedBatch
from gristmill.engine.progress import NullProgress, ProgressReporter
from gristmill.engine.seeds import SeedReader, load_seed_table, seed_digest
from gristmill.errors import ArtifactError, GristmillError, ResumeError
from gristmill.storage.atomic import WrittenFile, sha256_file, write_json_atomic, write_parquet_atomic
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.lock import DirectoryLock
from gristmill.storage.metadata import BatchRecord, DatasetMetadata, DatasetStatus, FileRecord, utc_now
from gristmill.version import __version__


@dataclass(frozen=True)
class DatasetIdentity:
    """What a stored run must match to be continued."""

    fingerprint: str
    components: dict[str, Any]
    seed_digest: str | None


def dataset_identity(config: DatasetConfig, *, include_seed_source: bool = True) -> DatasetIdentity:
    """Fingerprint plus seed content digest of ``config`` (reads seed files to hash them)."""
    digest = seed_digest(config.seed) if config.seed is not None and include_seed_source else None
    return DatasetIdentity(config.fingerprint(include_seed_source=include_seed_source),
                           config.fingerprint_components(include_seed_source=include_seed_source), digest)


def resume_mismatches(meta: DatasetMetadata, identity: DatasetIdentity, run_config: RunConfig) -> list[str]:
    """Why ``meta`` cannot be continued with this config and run options (empty: it can)."""
    reasons = []
    if meta.fingerprint != identity.fingerprint:
        changes = describe_changes(meta.fingerprint_components, identity.components)
        reasons.append(f"the config changed ({changes})")
    if meta.seed_digest != identity.seed_digest:
        reasons.append("the seed dataset's content changed")
    if meta.batch_size != run_config.batch_size:
        reasons.append(f"batch_size is {run_config.batch_size}, the stored run used {meta.batch_size}")
    if run_config.seed is not None and run_config.seed != meta.run_seed:
        reasons.append(f"seed is {run_config.seed}, the stored run used {meta.run_seed}")
    return reasons


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Name what differs between two sets of fingerprint components, e.g. "expr of column 'x' changed"."""
    changes: list[str] = []
    if old.get("version") != new.get("version"):
        changes.append(f"fingerprint version {old.get('version')} -> {new.get('version')}")
    old_cols, new_cols = old.get("columns", {}), new.get("columns", {})
    for name in new_cols:
        if name not in old_cols:
            changes.append(f"column {name!r} added")
        elif old_cols[name] != new_cols[name]:
            fields = sorted(k for k in set(old_cols[name]) | set(new_cols[name])
                            if old_cols[name].get(k) != new_cols[name].get(k))
            changes.append(f"{', '.join(fields)} of column {name!r} changed")
    changes.extend(f"column {name!r} removed" for name in old_cols if name not in new_cols)
    for part in ("constraints", "processors", "seed", "models"):
        if old.get(part) != new.get(part):
            changes.append(f"{part} changed")
    return "; ".join(changes) or "fingerprint differs"


def verify_batches(meta: DatasetMetadata, layout: DatasetLayout, *, check_hashes: bool = False) -> None:
    """Raise ArtifactError naming the first recorded batch file that is missing or altered.

    Sizes and parquet footers (row counts) are always checked, which is cheap; the sha256 of
    every byte only with ``check_hashes``.
    """
    advice = "restore it, or rerun with resume=never to regenerate the dataset in a new directory"
    for record in meta.completed_batches:
        for rec in [record, *record.processor_files.values(), *([record.dropped_file] if record.dropped_file else [])]:
            path = layout.root / rec.file
            if not path.is_file():
                raise ArtifactError(f"{path} is recorded as complete but missing; {advice}")
            size = path.stat().st_size
            if size != rec.bytes or (check_hashes and sha256_file(path) != rec.sha256):
                raise ArtifactError(f"{path} is truncated or altered ({size} bytes, {rec.bytes} recorded); {advice}")
            if _footer_rows(path) != rec.rows:
                raise ArtifactError(f"{path} is corrupt (its parquet footer does not hold the {rec.rows} rows "
                                    f"recorded); {advice}")


def _footer_rows(path: Path) -> int | None:
    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError):
        return None


class DatasetRun:
    """Executes one create() into ``layout.root`` with the directory lock held."""

    def __init__(self, config: DatasetConfig, *, layout: DatasetLayout, dataset_name: str, num_records: int,
                 run_config: RunConfig, loop: BackgroundLoop, llm: Any = None, response_cache: Any = None,
                 progress: ProgressReporter | None = None, run_seed: int | None = None,
                 identity: DatasetIdentity | None = None, cache_scope: str = "",
                 import_caches: Sequence[Path] = ()) -> None:
        self.config = config
        self.layout = layout
        self.dataset_name = dataset_name
        self.num_records = num_records
        self.run_config = run_config
        self.loop = loop
        self.llm = llm
        self.response_cache = response_cache
        self.progress = progress or NullProgress()
        self.run_seed = run_seed
        self.identity = identity or dataset_identity(config)
        self.cache_scope = cache_scope
        self.import_caches = tuple(import_caches)  # earlier runs' caches that a fresh run starts from
        self.generated_rows = 0  # rows built by this execute() (0 when the dataset was complete)
        self.run_usage: dict[str, dict[str, int]] = {}  # this execute()'s usage alone

    def execute(self, *, resume: bool) -> DatasetMetadata:
        """Generate every missing batch. ``resume``: continue the stored run (checked here again)."""
        with DirectoryLock(self.layout.root):
            meta = self._load_for_resume() if resume else self._fresh_metadata()
            with self._cache() as cache:
                context = EngineContext(config=self.config, run_config=self.run_config, dataset_dir=self.layout.root,
                                        llm=self.llm, response_cache=cache, cache_scope=self.cache_scope)
                plan = self._prepare(context, meta.run_seed)  # config errors surface before anything is written
                write_json_atomic(self.layout.config_path, self.config.to_dict())
                return self._generate(meta, plan, context)

    def _prepare(self, context: EngineContext, run_seed: int) -> BatchPlan:
        seed = self.config.seed
        reader = SeedReader(load_seed_table(seed), seed.sampling_strategy, run_seed) if seed is not None else None
        return BatchPlan.prepare(self.config, context, reader)

    def _fresh_metadata(self) -> DatasetMetadata:
        if not self.layout.is_empty():
            raise ArtifactError(f"{self.layout.root} is not empty; refusing to overwrite it")
        seed = self.run_seed if self.run_seed is not None else self.run_config.seed
        return DatasetMetadata(
            gristmill_version=__version__, dataset_name=self.dataset_name,
            fingerprint=self.identity.fingerprint, fingerprint_version=FINGERPRINT_VERSION,
            fingerprint_components=self.identity.components, seed_digest=self.identity.seed_digest,
            run_seed=seed if seed is not None else secrets.randbits(63), batch_size=self.run_config.batch_size,
            target_rows=self.num_records)

    def _load_for_resume(self) -> DatasetMetadata:
        meta = DatasetMetadata.load(self.layout.metadata_path)
        run_config = self.run_config
        if self.run_seed is not None and run_config.seed is None:
            run_config = run_config.model_copy(update={"seed": self.run_seed})
        reasons = resume_mismatches(meta, self.identity, run_config)
        if reasons:
            raise ResumeError(f"cannot resume {self.layout.root}: " + "; ".join(reasons))
        verify_batches(meta, self.layout)
        if meta.actual_rows > self.num_records:
            raise ResumeError(f"cannot resume {self.layout.root}: it already holds {meta.actual_rows} rows, more "
                              f"than the {self.num_records} requested; ask for at least {meta.actual_rows}")
        # Growing a dataset appends batches after the last one, even a partial one: rows already
        # written (and paid for) never change.
        meta.target_rows = self.num_records
        return meta

    @contextlib.contextmanager
    def _cache(self) -> Iterator[Any]:
        needs_models = any(c.model_aliases() for c in self.config.columns)
        if self.response_cache is not None or not needs_models or not self.run_config.cache:
            yield self.response_cache
            return
        from gristmill.llm.cache import ResponseCache

        cache = ResponseCache(self.layout.response_cache_path)
        for earlier in self.import_caches:
            try:
                cache.import_from(earlier)
            except ArtifactError as exc:  # an unreadable old cache only means paying again
                warnings.warn(f"not reusing answers from {earlier}: {exc}", stacklevel=2)
        try:
            yield cache
        finally:
            cache.close()

    def _generate(self, meta: DatasetMetadata, plan: BatchPlan, context: EngineContext) -> DatasetMetadata:
        self._usage_base = {model: dict(c) for model, c in meta.usage.items()}
        column_names = [n for n in plan.output_names if n not in plan.drop]
        if meta.status is DatasetStatus.COMPLETED and meta.actual_rows >= meta.target_rows \
                and meta.column_names == column_names:
            return meta  # a complete dataset resumes as a no-op: nothing to write
        meta.status, meta.error, meta.finished_at = DatasetStatus.RUNNING, None, None
        meta.column_names = column_names
        meta.save(self.layout.metadata_path)
        self.progress.start(self.dataset_name, total=self.num_records, completed=meta.actual_rows)
        try:
            while meta.actual_rows < meta.target_rows:
                self._one_batch(plan, meta, context, len(meta.completed_batches))
        except BaseException as exc:
            meta.status = DatasetStatus.FAILED
            meta.error = f"{type(exc).__name__}: {exc}" if isinstance(exc, GristmillError) else type(exc).__name__
            _merge_usage(meta, self._usage_base, context)
            meta.save(self.layout.metadata_path)
            raise
        finally:
            self.progress.finish()
        self.run_usage = {model: dict(counters) for model, counters in context.usage.items()}
        if meta.status is not DatasetStatus.COMPLETED:  # no batch was missing (the last one marks it)
            meta.status, meta.finished_at = DatasetStatus.COMPLETED, utc_now()
            _merge_usage(meta, self._usage_base, context)
            meta.save(self.layout.metadata_path)
        return meta

    def _one_batch(self, plan: BatchPlan, meta: DatasetMetadata, context: EngineContext, index: int) -> None:
        started = time.perf_counter()
        offset = meta.actual_rows
        rows = min(meta.batch_size, meta.target_rows - offset)
        batch = self.loop.run(plan.build(batch_index=index, row_offset=offset, num_rows=rows, run_seed=meta.run_seed))
        record = self._write_batch(index, batch)
        record.row_offset = offset
        record.seconds = round(time.perf_counter() - started, 6)
        meta.completed_batches.append(record)
        meta.generation_seconds = round(meta.generation_seconds + record.seconds, 6)
        if meta.actual_rows >= meta.target_rows:  # the last batch commits the completion with it
            meta.status, meta.finished_at = DatasetStatus.COMPLETED, utc_now()
        _merge_usage(meta, self._usage_base, context)
        meta.save(self.layout.metadata_path)
        self.generated_rows += rows
        self.progress.advance(rows)

    def _write_batch(self, index: int, batch: ProcessedBatch) -> BatchRecord:
        # Side files first, the main file last: the metadata update that follows is what
        # marks the batch complete, so a crash anywhere before it just redoes the batch.
        named = {name: self._record(write_parquet_atomic(self.layout.processor_batch_path(name, index), table),
                                    table.num_rows) for name, table in batch.named.items()}
        dropped = None
        if batch.dropped is not None:
            written = write_parquet_atomic(self.layout.dropped_batch_path(index), batch.dropped)
            dropped = self._record(written, batch.dropped.num_rows)
        main = self._record(write_parquet_atomic(self.layout.batch_path(index), batch.main), batch.main.num_rows)
        return BatchRecord(index=index, file=main.file, rows=main.rows, bytes=main.bytes, sha256=main.sha256,
                           processor_files=named, dropped_file=dropped)

    def _record(self, written: WrittenFile, rows: int) -> FileRecord:
        return FileRecord(file=written.path.relative_to(self.layout.root).as_posix(), rows=rows,
                          bytes=written.num_bytes, sha256=written.sha256)


def _merge_usage(meta: DatasetMetadata, base: dict[str, dict[str, int]], context: EngineContext) -> None:
    """Usage of earlier runs of this dataset (``base``) plus this run's counters."""
    meta.usage = {model: dict(c) for model, c in base.items()}
    for model, counters in context.usage.items():
        stored = meta.usage.setdefault(model, {})
        for key, value in counters.items():
            stored[key] = stored.get(key, 0) + value
