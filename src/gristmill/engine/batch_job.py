"""Build one batch and write its files: the code every executor shares, in-process or on a worker.

``build_and_write`` takes a prepared ``BatchPlan`` and a coroutine runner (the Mill's loop, or
a worker's own), builds the batch and writes its files atomically into the dataset directory.
``PortableBatchJob`` is what a worker needs to prepare that plan itself: plain, picklable values
(the config, the dataset directory, the run seed, the cache scope and the run options), never
the Mill's services, whose loop and connections cannot leave the driver process.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from gristmill.config import trust
from gristmill.config.dataset import DatasetConfig
from gristmill.config.run import RunConfig
from gristmill.engine.batches import BatchPlan
from gristmill.engine.cells import ERRORS_COLUMN, ROW_COLUMN, retryable_rows
from gristmill.engine.generators import EngineContext
from gristmill.engine.processors import ProcessedBatch
from gristmill.engine.seeds import SeedReader, load_seed_table
from gristmill.errors import ArtifactError, GenerationError
from gristmill.storage.atomic import WrittenFile, file_digests, write_parquet_atomic
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import BatchRecord, BatchSpec, FileRecord, SideFile
from gristmill.storage.tables import read_parquet_checked

Usage = dict[str, dict[str, int]]

RunCoroutine = Callable[[Coroutine[Any, Any, ProcessedBatch]], ProcessedBatch]

# "module:qualname" as configs name callables (config/trust.py); other strings never match it.
_REFERENCE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[A-Za-z_][\w.]*$")


def prepare_plan(config: DatasetConfig, context: EngineContext, run_seed: int) -> BatchPlan:
    """The ``BatchPlan`` of ``config`` with its seed reader; raises ConfigError for a bad config."""
    seed = config.seed
    reader = SeedReader(load_seed_table(seed), seed.sampling_strategy, run_seed) if seed is not None else None
    return BatchPlan.prepare(config, context, reader)


def build_and_write(plan: BatchPlan, layout: DatasetLayout, spec: BatchSpec, *, run_seed: int,
                    run: RunCoroutine) -> BatchRecord:
    """Build batch ``spec`` with ``plan`` (its coroutine driven by ``run``) and write its files."""
    started = time.perf_counter()
    batch = run(plan.build(batch_index=spec.index, row_offset=spec.row_offset, num_rows=spec.rows,
                           run_seed=run_seed))
    record = _write(layout, spec.index, batch, plan.config)
    record.row_offset = spec.row_offset
    record.seconds = round(time.perf_counter() - started, 6)
    return record


def retry_and_write(plan: BatchPlan, layout: DatasetLayout, stored: BatchRecord, *, run_seed: int,
                    run: RunCoroutine) -> BatchRecord:
    """Regenerate the failed cells of the committed batch ``stored`` and write the result under the
    batch's next generation of file names; the stored files stay until the new record is committed."""
    started = time.perf_counter()
    table = stored_batch_table(layout, stored)
    batch = run(plan.retry(table, batch_index=stored.index, row_offset=stored.row_offset, run_seed=run_seed))
    record = _write(layout, stored.index, batch, plan.config, generation=stored.generation + 1)
    record.row_offset = stored.row_offset
    record.seconds = round(stored.seconds + time.perf_counter() - started, 6)
    return record


def trim_and_write(plan: BatchPlan, layout: DatasetLayout, stored: BatchRecord, surplus: int, *,
                   run_seed: int) -> BatchRecord:
    """Rewrite the committed batch ``stored`` with its last ``surplus`` rows moved to dropped-rows/
    (``target_valid_records`` was passed); nothing is generated."""
    table = stored_batch_table(layout, stored)
    batch = plan.refinish(table, row_offset=stored.row_offset, run_seed=run_seed, batch_index=stored.index,
                          surplus=surplus)
    record = _write(layout, stored.index, batch, plan.config, generation=stored.generation + 1)
    record.row_offset, record.seconds = stored.row_offset, stored.seconds
    return record


def stored_batch_table(layout: DatasetLayout, record: BatchRecord) -> pa.Table:
    """The batch as it was before processors split it: main and dropped columns side by side,
    dropped rows back in their places (by their ``__row``)."""
    table = read_parquet_checked(layout.root / record.file)
    if record.dropped_file is not None:
        dropped = read_parquet_checked(layout.root / record.dropped_file.file)
        for name in dropped.column_names:
            table = table.append_column(name, dropped.column(name))
    if record.dropped_rows_file is None:
        return table
    rows = read_parquet_checked(layout.root / record.dropped_rows_file.file)
    total = table.num_rows + rows.num_rows
    taken = set(rows.column(ROW_COLUMN).to_pylist())
    kept = [r for r in range(record.row_offset, record.row_offset + total) if r not in taken]
    table = table.append_column(ROW_COLUMN, pa.array(kept, pa.int64()))
    merged = pa.concat_tables([table, rows], promote_options="permissive").sort_by(ROW_COLUMN)
    return merged.drop_columns([ROW_COLUMN])


def remove_replaced(layout: DatasetLayout, old: BatchRecord, new: BatchRecord) -> None:
    """The files of ``old`` that ``new`` (its committed rewrite) no longer names. Its parquet files
    only: image files are never removed here, as a row's image keeps its name in every generation
    (the new record names the same file), and an image is not worth a gap if it did not."""
    keep = {f.file for f in batch_files(new)}
    for rec in batch_files(old):
        if rec.file not in keep:
            (layout.root / rec.file).unlink(missing_ok=True)


def batch_files(record: BatchRecord) -> list[FileRecord]:
    """Every parquet file a batch record names (not its ``image_files``)."""
    files: list[FileRecord] = [record, *record.processor_files.values()]
    files += [f for f in (record.dropped_file, record.dropped_rows_file) if f is not None]
    return files


def image_columns(config: DatasetConfig) -> tuple[str, ...]:
    """The config's image columns, whose cells name files under the dataset directory."""
    return tuple(column.name for column in config.columns if column.column_type == "image")


def _write(layout: DatasetLayout, index: int, batch: ProcessedBatch, config: DatasetConfig,
           generation: int = 0) -> BatchRecord:
    # Side files first, the main file last: the commit that follows is what marks the batch
    # complete, so a crash anywhere before it just redoes the batch. The images, written by
    # their generator already, are read once for their record before any parquet is written.
    image_files = _image_files(layout, image_columns(config), (batch.main, batch.dropped, batch.dropped_rows))
    own = {name for column in config.columns for name in column.output_columns()}
    named = {name: _record(layout, write_parquet_atomic(layout.processor_batch_path(name, index, generation), table),
                           table.num_rows) for name, table in batch.named.items()}
    dropped = None
    if batch.dropped is not None:
        dropped = _record(layout, write_parquet_atomic(layout.dropped_batch_path(index, generation), batch.dropped),
                          batch.dropped.num_rows)
    dropped_rows = None
    failed = 0
    if batch.dropped_rows is not None:
        path = layout.dropped_rows_batch_path(index, generation)
        dropped_rows = _record(layout, write_parquet_atomic(path, batch.dropped_rows), batch.dropped_rows.num_rows)
        failed += retryable_rows(batch.dropped_rows.column(ERRORS_COLUMN), own)
    if ERRORS_COLUMN in batch.main.column_names:
        failed += retryable_rows(batch.main.column(ERRORS_COLUMN), own)
    main = _record(layout, write_parquet_atomic(layout.batch_path(index, generation), batch.main), batch.main.num_rows)
    return BatchRecord(index=index, file=main.file, rows=main.rows, bytes=main.bytes, sha256=main.sha256,
                       crc32=main.crc32, processor_files=named, dropped_file=dropped, dropped_rows_file=dropped_rows,
                       failed_rows=failed, generation=generation, image_files=image_files)


def _record(layout: DatasetLayout, written: WrittenFile, rows: int) -> FileRecord:
    return FileRecord(file=written.path.relative_to(layout.root).as_posix(), rows=rows,
                      bytes=written.num_bytes, sha256=written.sha256, crc32=written.crc32)


def _image_files(layout: DatasetLayout, columns: Sequence[str],
                 tables: Sequence[pa.Table | None]) -> list[SideFile]:
    """A record of every image file the non-null cells of ``columns`` name in ``tables`` (main,
    dropped columns, dropped rows), each read once; sorted by path."""
    records: dict[str, SideFile] = {}
    for table in tables:
        if table is None:
            continue
        for column in columns:
            if column not in table.column_names:
                continue
            for value in table.column(column).to_pylist():
                if value is not None and not (isinstance(value, str) and value in records):
                    records[str(value)] = _image_record(layout, column, value)  # raises unless a path
    return sorted(records.values(), key=lambda record: record.file)


def _image_record(layout: DatasetLayout, column: str, value: Any) -> SideFile:
    relative = PurePosixPath(value) if isinstance(value, str) and value else None
    if relative is None or relative.is_absolute() or ".." in relative.parts:
        raise GenerationError(f"image column {column!r} holds {value!r}, not a path inside the dataset directory "
                              f"{layout.root}; its cells must name the image files its generator wrote (did a "
                              "processor rewrite the column?)")
    path = layout.root / relative
    try:
        size = path.stat().st_size
        sha256, crc32 = file_digests(path)
    except OSError as exc:
        raise ArtifactError(f"{path}, the image of column {column!r} a batch being written names, cannot be read "
                            f"({exc.strerror or exc}); was it removed while the run was writing? Run again to "
                            "write it from the response cache") from None
    return SideFile(file=relative.as_posix(), bytes=size, crc32=crc32, sha256=sha256)


@dataclass(frozen=True)
class PortableBatchJob:
    """Everything a worker process needs to build any batch of one dataset run; picklable.

    ``token`` names this run's job, so a worker prepares its plan once and reuses it for every
    batch of the run it is given. ``trusted_modules``: the modules the config names callables
    from that the driver already allowed (``config/trust.py``), allowed again in the worker,
    whose environment and ``allow_modules`` calls are not the driver's. ``import_paths``: the
    directories the driver imports those modules from, which a worker on the same machine or
    filesystem may not have on its ``sys.path`` (a module beside the user's script).

    LLM columns: ``registry`` and ``clients`` (the driver's, loaded once) build the worker's own
    clients; ``model_limits`` is the ``max_parallel_requests`` of each (provider, model) the config
    calls, from which the executor starts one throttle actor each (``throttles``, set by the
    executor); ``response_cache`` is the main cache file, read-only on workers (new answers go
    to per-batch shards, ``llm/cache_shards.py``); None when caching is off.
    """

    token: str
    config: DatasetConfig
    dataset_dir: Path  # absolute: a worker's working directory need not be the driver's
    run_seed: int
    run_config: RunConfig
    cache_scope: str = ""
    trusted_modules: tuple[str, ...] = ()
    import_paths: tuple[str, ...] = ()
    registry: Any = None  # llm.registry.ModelRegistry when the config calls models
    clients: Mapping[str, Any] | None = None
    model_limits: Mapping[tuple[str, str], int] = field(default_factory=dict)
    throttles: Mapping[tuple[str, str], Any] = field(default_factory=dict)  # (provider, model) -> actor handle
    response_cache: Path | None = None

    @property
    def layout(self) -> DatasetLayout:
        return DatasetLayout(self.dataset_dir)

    def with_throttles(self, throttles: Mapping[tuple[str, str], Any]) -> PortableBatchJob:
        return dataclasses.replace(self, throttles=dict(throttles))

    def prepare(self) -> PreparedJob:
        """The plan, built in the calling process, with its own LLM runtime (throttled by the
        driver's actors) and a response cache writing per-batch shards, when the config calls models."""
        trust.allow_modules(*self.trusted_modules)
        # Appended, never first: a module the worker already finds wins over the driver's copy.
        sys.path.extend(path for path in self.import_paths if path not in sys.path)
        llm: Any = None
        cache: Any = None
        if self.registry is not None:
            from gristmill.llm.cache_shards import ShardedResponseCache
            from gristmill.llm.cluster_throttle import ClusterLLMRuntime

            llm = ClusterLLMRuntime(self.registry, clients=self.clients, throttles=dict(self.throttles))
            if self.run_config.cache:
                cache = ShardedResponseCache(self.response_cache)
        context = EngineContext(config=self.config, run_config=self.run_config, dataset_dir=self.dataset_dir,
                                llm=llm, response_cache=cache, cache_scope=self.cache_scope)
        return PreparedJob(plan=prepare_plan(self.config, context, self.run_seed), context=context,
                           llm=llm, cache=cache)


@dataclass(frozen=True)
class PreparedJob:
    """A worker's prepared job: the plan and what its LLM columns use between batches."""

    plan: BatchPlan
    context: EngineContext
    llm: Any = None  # ClusterLLMRuntime
    cache: Any = None  # ShardedResponseCache

    def take_usage(self) -> Usage:
        """The usage counted since the last call (one batch's), zeroed in place: generators hold the counters."""
        taken = {model: dict(counters) for model, counters in self.context.usage.items() if counters}
        for counters in self.context.usage.values():
            counters.clear()
        return taken


def trusted_references(config: DatasetConfig) -> tuple[str, ...]:
    """Modules of the ``module:qualname`` strings in ``config`` that this process allows."""
    modules: set[str] = set()
    _collect_modules(config.to_dict(), modules)
    return tuple(sorted(m for m in modules if trust.is_allowed(m)))


def import_paths(modules: Sequence[str]) -> tuple[str, ...]:
    """The ``sys.path`` directories this process finds the top-level packages of ``modules`` in."""
    paths: list[str] = []
    for top in dict.fromkeys(module.split(".")[0] for module in modules):
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: finds, imports nothing
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin is None or not Path(spec.origin).is_file():
            continue  # built-in or namespace package: nothing to point a worker at
        origin = Path(spec.origin).resolve()
        home = str(origin.parent.parent if spec.submodule_search_locations else origin.parent)
        if home not in paths:
            paths.append(home)
    return tuple(paths)


def _collect_modules(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        match = _REFERENCE.match(value)
        if match:
            into.add(match.group(1))
    elif isinstance(value, dict):
        for item in value.values():
            _collect_modules(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_modules(item, into)
