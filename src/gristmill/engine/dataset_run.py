"""Execute one dataset decision: write missing batches atomically and record them in metadata.

The decision (fresh, reuse, resume, grow: ``engine/dataset_plan.py``) is made by the caller,
under the directory lock, which the caller holds while this runs. A run never decides again:
it continues the metadata it is given, or starts the metadata of a fresh run.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.config.dataset import DatasetConfig
from gristmill.config.fingerprint import FINGERPRINT_VERSION
from gristmill.config.run import RunConfig
from gristmill.engine.batch_job import (
    PortableBatchJob,
    build_and_write,
    import_paths,
    prepare_plan,
    remove_replaced,
    retry_and_write,
    trim_and_write,
    trusted_references,
)
from gristmill.engine.batches import BatchPlan
from gristmill.engine.dataset_plan import DatasetIdentity
from gristmill.engine.executor import BatchExecutor
from gristmill.engine.generators import EngineContext
from gristmill.engine.loop import BackgroundLoop
from gristmill.engine.progress import ProgressReporter, llm_cells_per_row, model_prices
from gristmill.engine.services import EngineServices, uses_models
from gristmill.errors import ArtifactError, GenerationError, GristmillError
from gristmill.llm.cache_shards import import_shard, merge_leftover_shards, remove_shard, shard_path
from gristmill.storage.atomic import write_json_atomic
from gristmill.storage.journal import JOURNAL_FILE, BatchJournal
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import BatchRecord, BatchSpec, DatasetMetadata, DatasetStatus, utc_now
from gristmill.version import __version__

if TYPE_CHECKING:
    from gristmill.llm.cache import ResponseCache

Usage = dict[str, dict[str, int]]


@dataclass(frozen=True)
class DatasetJob:
    """What to generate and where: the same for a ``create()`` and a workflow stage."""

    config: DatasetConfig
    layout: DatasetLayout
    dataset_name: str
    num_records: int
    run_config: RunConfig  # its seed is set: the stored run's, or the one a fresh run records
    identity: DatasetIdentity
    cache_scope: str = ""  # separates cache entries of same-named columns (a workflow's stage name)


class DatasetRun:
    """Generates the missing batches of one job with the directory lock held by the caller."""

    def __init__(self, job: DatasetJob, services: EngineServices, *, response_cache: ResponseCache | None = None,
                 import_caches: Sequence[Path] = (), executor: BatchExecutor | None = None,
                 move_damaged_cache: bool = True, retry_failed: bool = False, label: str | None = None) -> None:
        self.job = job
        self.label = label or job.dataset_name  # of its progress line
        self.services = services
        self.response_cache = response_cache  # a workflow's shared cache; None: the dataset opens its own
        self.import_caches = tuple(import_caches)  # earlier runs' caches that a fresh run starts from
        # The Mill's choice (RunConfig.executor) unless the caller brings its own.
        self.executor = executor if executor is not None else services.executor()
        self.move_damaged_cache = move_damaged_cache  # False under resume=always: a damaged cache raises
        self.retry_failed = retry_failed  # then regenerate the failed cells of committed batches
        self.retried_rows = 0  # rows whose failed cells this execute() regenerated
        self.generated_rows = 0  # rows built by this execute() (0 when the dataset was complete)
        self.run_usage: Usage = {}  # this execute()'s usage alone

    def execute(self, stored: DatasetMetadata | None) -> DatasetMetadata:
        """Continue ``stored`` (the metadata the planner read), or start fresh when None."""
        job = self.job
        meta = stored.model_copy(deep=True) if stored is not None else self._fresh_metadata()
        meta.plan_rows(job.num_records)
        to_retry = self.retry_failed and any(b.failed_rows for b in meta.completed_batches)
        target = job.run_config.target_valid_records
        short = target is not None and meta.actual_rows < target
        if meta.status is DatasetStatus.COMPLETED and not meta.missing_batches() and not to_retry and not short:
            return meta  # complete: nothing to build, so no cache or model is even opened
        needs_cache = self.response_cache is None and uses_models(job.config)
        progress = self.services.progress()
        with self.services.response_cache(job.layout.response_cache_path, needed=needs_cache,
                                          import_from=self.import_caches,
                                          move_damaged=self.move_damaged_cache) as own_cache:
            context = EngineContext(config=job.config, run_config=job.run_config, dataset_dir=job.layout.root,
                                    llm=self.services.llm_for(job.config),
                                    response_cache=self.response_cache or own_cache, cache_scope=job.cache_scope,
                                    progress=progress)
            progress.watch(context.usage, model_prices(job.config, context.llm))
            if context.llm is not None:  # results read the cost of the usage at these prices
                meta.prices = model_prices(job.config, context.llm)
            plan = self._prepare(context, meta.run_seed)  # config errors surface before anything is written
            write_json_atomic(job.layout.config_path, job.config.to_dict())
            if context.response_cache is not None:
                # Answers a killed worker or driver stored in per-batch shards (Ray executor).
                merge_leftover_shards(context.response_cache, job.layout.root)
            meta = self._generate(meta, plan, context, progress)
            return self._retry(meta, plan, context, progress) if self.retry_failed else meta

    def _prepare(self, context: EngineContext, run_seed: int) -> BatchPlan:
        return prepare_plan(self.job.config, context, run_seed)

    def _fresh_metadata(self) -> DatasetMetadata:
        job = self.job
        if not job.layout.is_empty():
            raise ArtifactError(f"{job.layout.root} is not empty; refusing to overwrite it")
        if job.run_config.seed is None or job.run_config.batch_size is None:
            raise ValueError("internal error: a fresh dataset run needs its run seed and batch size decided by "
                             "the caller")
        return DatasetMetadata(
            gristmill_version=__version__, dataset_name=job.dataset_name,
            fingerprint=job.identity.fingerprint, fingerprint_version=FINGERPRINT_VERSION,
            fingerprint_components=job.identity.components, seed_digest=job.identity.seed_digest,
            run_seed=job.run_config.seed, batch_size=job.run_config.batch_size, target_rows=job.num_records,
            on_failed_rows=job.run_config.on_failed_rows, valid_filter=job.run_config.valid_filter)

    def _generate(self, meta: DatasetMetadata, plan: BatchPlan, context: EngineContext,
                  progress: ProgressReporter) -> DatasetMetadata:
        usage_base = {model: dict(c) for model, c in meta.usage.items()}
        column_names = [n for n in plan.output_names if n not in plan.drop]
        missing = meta.missing_batches()
        target = self.job.run_config.target_valid_records
        if (meta.status is DatasetStatus.COMPLETED and not missing and meta.column_names == column_names
                and (target is None or meta.actual_rows >= target)):
            return meta  # a complete dataset is reused as it is: nothing to write
        meta.status, meta.error, meta.finished_at = DatasetStatus.RUNNING, None, None
        meta.column_names = column_names
        journal = BatchJournal(self.job.layout.root / JOURNAL_FILE)
        self._compact(meta, journal)
        cells_per_row = llm_cells_per_row(self.job.config)
        progress.start(self.label, total=meta.target_rows, completed=meta.built_rows,
                       cells_per_row=cells_per_row)
        writer = _BatchWriter(self.job, plan, self.services.loop, meta.run_seed, context,
                              clients=self.services.models.clients)
        left = {spec.index for spec in missing}
        cache = context.response_cache

        def commit(record: BatchRecord) -> None:
            # O(1) in the number of batches already written: one journal line, no metadata rewrite.
            shard = shard_path(self.job.layout.root, record.index)
            if cache is not None:  # a batch built on a Ray worker left its new answers in a shard
                import_shard(cache, shard)
            meta.commit_batch(record)
            meta.generation_seconds = round(meta.generation_seconds + record.seconds, 6)
            _merge_usage(meta, usage_base, context)
            journal.append(meta.journal_entry(record))
            if cache is not None:
                remove_shard(shard)  # only once committed: a crash before it merges the shard again next run
            left.discard(record.index)
            self.generated_rows += record.built_rows
            progress.advance(record.built_rows)

        try:
            while True:
                self.executor.run(missing, writer, commit)
                missing = self._more_for_target(meta)
                if not missing:
                    break
                left.update(spec.index for spec in missing)
                progress.start(self.label, total=meta.target_rows, completed=meta.built_rows,
                               cells_per_row=cells_per_row)
            self._trim_surplus(meta, plan, lambda old, new: self._commit_rewrite(meta, old, new, journal, usage_base,
                                                                                 context))
        except BaseException as exc:
            meta.status = DatasetStatus.FAILED
            meta.error = f"{type(exc).__name__}: {exc}" if isinstance(exc, GristmillError) else type(exc).__name__
            _merge_usage(meta, usage_base, context)
            self._compact(meta, journal)
            raise
        finally:
            journal.close()
            progress.finish()
        self.run_usage = {model: dict(counters) for model, counters in context.usage.items()}
        if left:
            raise GristmillError(f"internal error: the {self.executor.name} executor returned with batches "
                                 f"{sorted(left)} not built")
        meta.status, meta.finished_at = DatasetStatus.COMPLETED, utc_now()
        _merge_usage(meta, usage_base, context)
        self._compact(meta, journal)
        return meta

    def _retry(self, meta: DatasetMetadata, plan: BatchPlan, context: EngineContext,
               progress: ProgressReporter) -> DatasetMetadata:
        """Regenerate the failed cells of every committed batch that has one, batch by batch: each
        rewrite goes to new files, is committed by one journal line, and only then are the old files
        removed, so a crash leaves the batch either as it was or fully retried."""
        failed = [record for record in meta.completed_batches if record.failed_rows]
        if not failed:
            return meta
        # meta.usage already holds this run's counters when batches were built before the retry.
        usage_base = {model: {key: value - context.usage.get(model, {}).get(key, 0) for key, value in c.items()}
                      for model, c in meta.usage.items()}
        journal = BatchJournal(self.job.layout.root / JOURNAL_FILE)
        progress.start(f"{self.label} (retrying failed rows)", total=sum(r.failed_rows for r in failed),
                       completed=0)
        try:
            for old in failed:
                new = retry_and_write(plan, self.job.layout, old, run_seed=meta.run_seed, run=self.services.loop.run)
                self._commit_rewrite(meta, old, new, journal, usage_base, context)
                self.retried_rows += old.failed_rows
                progress.advance(old.failed_rows)
        finally:
            journal.close()
            progress.finish()
            _merge_usage(meta, usage_base, context)
            self._compact(meta, journal)
        self.run_usage = {model: dict(counters) for model, counters in context.usage.items()}  # build + retry
        return meta

    def _commit_rewrite(self, meta: DatasetMetadata, old: BatchRecord, new: BatchRecord, journal: BatchJournal,
                        usage_base: Usage, context: EngineContext) -> None:
        """Commit ``new`` (a rewrite of the committed batch ``old``, under new file names), then
        remove the files only ``old`` named: a crash in between leaves orphans, never a gap."""
        meta.commit_batch(new)
        _merge_usage(meta, usage_base, context)
        journal.append(meta.journal_entry(new))
        remove_replaced(self.job.layout, old, new)

    def _more_for_target(self, meta: DatasetMetadata) -> list[BatchSpec]:
        """Under ``target_valid_records``: the batches to build next, sized by the pass rate so far
        (none once enough rows passed). Raises when ``max_records`` cannot be enough."""
        run = self.job.run_config
        if run.target_valid_records is None:
            return []
        target, valid, built = run.target_valid_records, meta.actual_rows, meta.built_rows
        if valid >= target:
            return []
        cap = run.max_records or 10 * target
        rate = valid / built if built else 0.0
        needed = math.ceil((target - valid) / rate) if rate else None
        if built >= cap or needed is None or built + needed > cap:
            estimate = f"about {built + needed:,} rows would be needed" if needed else "no row passed yet"
            raise GenerationError(
                f"target_valid_records={target} is out of reach within max_records={cap}: {valid} of the {built} "
                f"rows generated passed ({rate:.0%}); {estimate}. The rows generated are kept: raise max_records "
                "(or loosen the filter or validators) and run again to continue.")
        meta.plan_rows(built + needed)
        return meta.missing_batches()

    def _trim_surplus(self, meta: DatasetMetadata, plan: BatchPlan,
                      commit: Callable[[BatchRecord, BatchRecord], None]) -> None:
        """Move the rows that passed beyond ``target_valid_records`` (the last ones) to dropped-rows/,
        so the dataset holds exactly the target; they stay on disk, paid for and never deleted."""
        target = self.job.run_config.target_valid_records
        surplus = meta.actual_rows - target if target is not None else 0
        for old in sorted(meta.completed_batches, key=lambda b: b.row_offset, reverse=True):
            if surplus <= 0:
                return
            take = min(surplus, old.rows)
            commit(old, trim_and_write(plan, self.job.layout, old, take, run_seed=meta.run_seed))
            surplus -= take

    def _compact(self, meta: DatasetMetadata, journal: BatchJournal) -> None:
        """Everything committed so far into metadata.json, then the journal is no longer needed."""
        meta.save(self.job.layout.metadata_path)
        journal.remove()


class _BatchWriter:
    """The ``BatchJob`` of a dataset run: builds batches on the Mill's loop, or hands a worker
    the portable form of itself to build them there (the same ``build_and_write`` either way)."""

    def __init__(self, job: DatasetJob, plan: BatchPlan, loop: BackgroundLoop, run_seed: int,
                 context: EngineContext, *, clients: Mapping[str, Any] | None = None) -> None:
        self.job, self.plan, self.loop, self.run_seed = job, plan, loop, run_seed
        self.context = context
        self.clients = clients  # the Mill's own ChatClients by provider: shipped to workers (picklable ones)

    def build_and_write(self, spec: BatchSpec) -> BatchRecord:
        return build_and_write(self.plan, self.job.layout, spec, run_seed=self.run_seed, run=self.loop.run)

    def add_usage(self, usage: Usage) -> None:
        for model, counters in usage.items():
            stored = self.context.usage[model]
            for key, value in counters.items():
                stored[key] += value

    def portable(self) -> PortableBatchJob:
        job, llm, cache = self.job, self.context.llm, self.context.response_cache
        modules = trusted_references(job.config)
        limits: dict[tuple[str, str], int] = {}
        if llm is not None:
            for alias in sorted({a for column in job.config.columns for a in column.model_aliases()}):
                resolved = llm.model(alias, job.config.models).resolved
                key = resolved.throttle_key
                limits[key] = min(limits.get(key, resolved.model.max_parallel_requests),
                                  resolved.model.max_parallel_requests)
        return PortableBatchJob(token=uuid.uuid4().hex, config=job.config, dataset_dir=job.layout.root.resolve(),
                                run_seed=self.run_seed, run_config=job.run_config, cache_scope=job.cache_scope,
                                trusted_modules=modules, import_paths=import_paths(modules),
                                registry=llm.registry if llm is not None else None,
                                clients=self.clients if llm is not None else None, model_limits=limits,
                                response_cache=cache.path.resolve() if cache is not None else None)


def _merge_usage(meta: DatasetMetadata, base: Usage, context: EngineContext) -> None:
    """Usage of earlier runs of this dataset (``base``) plus this run's counters."""
    meta.usage = {model: dict(c) for model, c in base.items()}
    for model, counters in context.usage.items():
        stored = meta.usage.setdefault(model, {})
        for key, value in counters.items():
            stored[key] = stored.get(key, 0) + value
