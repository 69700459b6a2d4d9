"""Executes a ``WorkflowPlan``: the runner only acts, every decision was made by the planner.

Per stage: REUSE copies the prior record and hands its stored output on; RUN clears the
stage directory and generates it; RESUME continues the stage's dataset from its completed
batches; SKIP_EMPTY records the skip. One decision is left to run time: a stage whose
upstream ran and came out empty (``allow_empty``) is skipped rather than run.
``workflow-metadata.json`` is rewritten after every status change.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gristmill.config.dataset import DatasetConfig
from gristmill.config.run import ResumeMode
from gristmill.engine.dataset_plan import DatasetRequest, dataset_identity, observe_dataset, plan_dataset
from gristmill.engine.dataset_run import DatasetJob, DatasetRun
from gristmill.engine.seeds import seed_column_names
from gristmill.engine.services import EngineServices
from gristmill.errors import GristmillError, WorkflowError
from gristmill.results import DatasetResults
from gristmill.storage.layout import RESPONSE_CACHE_FILE, TRASH_DIR, DatasetLayout, move_to_trash
from gristmill.storage.lock import DirectoryLock
from gristmill.storage.metadata import DatasetMetadata, utc_now
from gristmill.version import __version__
from gristmill.workflow.fingerprint import UpstreamIdentity, output_identity, stage_identity
from gristmill.workflow.handoff import handoff_directory, link_handoff, write_joined_handoff
from gristmill.workflow.metadata import (
    WORKFLOW_METADATA_FILE,
    StageRecord,
    StageStatus,
    WorkflowMetadata,
    resolve_stored,
    stored_path,
)
from gristmill.workflow.observe import OverrideInput, PriorState, first_seed_digest, parquet_output_files
from gristmill.workflow.outputs import (
    clear_post_processing,
    output_file_records,
    own_output_files,
    own_output_path,
    run_callback,
    run_output_processors,
)
from gristmill.workflow.plan import StageAction, StagePlan, WorkflowPlan
from gristmill.workflow.results import SkippedStageResult, StageResult, WorkflowResults
from gristmill.workflow.schedule import run_dag
from gristmill.workflow.stage import StageDefinition
from gristmill.workflow.validate import stage_errors

if TYPE_CHECKING:
    from gristmill.llm.cache import ResponseCache


@dataclass(frozen=True)
class Handoff:
    """What the next stage receives: the selected output, its rows and its identity.

    ``files`` are the recorded files of that output, the only ones the next stage reads
    (``path`` is where they live, for the record and for messages).
    """

    stage: str
    path: Path | None
    rows: int
    identity: UpstreamIdentity | None
    empty_from: str | None = None  # the stage that came out empty, propagated through skips
    files: tuple[Path, ...] = ()


class WorkflowRunner:
    """Runs the stages of one plan inside ``workflow_dir`` (the caller holds its lock)."""

    def __init__(self, services: EngineServices, *, workflow_dir: Path, workflow_name: str,
                 stages: Sequence[StageDefinition], plan: WorkflowPlan, prior: PriorState,
                 overrides: Mapping[str, OverrideInput],
                 run_seeds: Mapping[str, int], retry_failed: bool = False) -> None:
        self.services = services
        self.retry_failed = retry_failed
        self.workflow_dir = workflow_dir
        self.stages = {s.name: s for s in stages}
        self.plan = plan
        self.prior = prior
        self.overrides = overrides
        self.run_seeds = run_seeds
        self._meta_lock = threading.Lock()
        self.meta = self._start_metadata(workflow_name, stages)

    def execute(self) -> WorkflowResults:
        """Run every planned stage once its parents are done, independent branches in parallel
        (``schedule.run_dag``); returns the results of all of them, in stage order."""
        results: dict[str, StageResult] = {}
        handoffs: dict[str, Handoff] = {}
        steps = {step.name: step for step in self.plan.stages}

        def work(name: str) -> tuple[Handoff, StageResult]:
            stage = self.stages[name]
            return self._execute_stage(stage, steps[name], {p: handoffs[p] for p in stage.parents}, cache)

        def done(name: str, value: tuple[Handoff, StageResult]) -> None:
            handoffs[name], results[name] = value

        with self._response_cache() as cache:
            if any(self.stages[s.name].uses_models() for s in self._generated_steps()):
                self.services.llm()  # built once here, not by two branches at the same moment
            run_dag([s.name for s in self.plan.stages], {n: self.stages[n].parents for n in steps}, work, done)
        ordered = {s.name: results[s.name] for s in self.plan.stages}
        return WorkflowResults(self.workflow_dir, self.meta, ordered, plan=self.plan)

    def _generated_steps(self) -> list[StagePlan]:
        return [s for s in self.plan.stages if s.action in (StageAction.RUN, StageAction.RESUME)]

    def _execute_stage(self, stage: StageDefinition, step: StagePlan, parents: Mapping[str, Handoff],
                       cache: ResponseCache | None) -> tuple[Handoff, StageResult]:
        empty_from = next((h.empty_from for h in parents.values() if h.empty_from is not None), None)
        if step.action is StageAction.SKIP_EMPTY or empty_from is not None:
            return self._skip(stage, empty_from or "?", step)
        if step.action is StageAction.REUSE:
            return self._reuse(stage, step)
        return self._generate(stage, step, parents, cache)

    # -- metadata -----------------------------------------------------------------------------
    def _start_metadata(self, name: str, stages: Sequence[StageDefinition]) -> WorkflowMetadata:
        meta = WorkflowMetadata(workflow_name=name, gristmill_version=__version__,
                                planned_stages=[stage.name for stage in stages])
        prior = self.prior.metadata
        if prior is not None and self.plan.fresh_reason is None:
            meta.created_at = prior.created_at
            # Records of stages not reached yet stay until replaced: stages after the last
            # target can still be reused by a later full run, and after a crash the file still
            # tells what every stage last held.
            for stage in stages:
                record = prior.stage(stage.index, stage.name)
                if record is not None:
                    meta.set_stage(record.model_copy(deep=True))
        return meta

    def _save(self, record: StageRecord) -> None:
        with self._meta_lock:  # branches running in parallel threads record their stages here
            self.meta.set_stage(record.model_copy(deep=True))
            self.meta.save(self.workflow_dir / WORKFLOW_METADATA_FILE)

    # -- actions ------------------------------------------------------------------------------
    def _skip(self, stage: StageDefinition, empty_from: str, step: StagePlan) -> tuple[Handoff, StageResult]:
        reason = step.reason if step.action is StageAction.SKIP_EMPTY else f"upstream {empty_from!r} came out empty"
        self._save(StageRecord(index=stage.index, name=stage.name, directory=stage.directory_name,
                               depends_on=list(stage.parents), last_action=StageAction.SKIP_EMPTY.value,
                               last_reason=reason, status=StageStatus.SKIPPED_EMPTY_UPSTREAM,
                               upstream_stage=empty_from))
        self._show_done(f"{stage.name} (skipped: {empty_from!r} came out empty)", 0)
        return (Handoff(stage.name, None, 0, None, empty_from=empty_from),
                SkippedStageResult(stage=stage.name, upstream_stage=empty_from))

    def _reuse(self, stage: StageDefinition, step: StagePlan) -> tuple[Handoff, StageResult]:
        prior = self.prior.metadata.stage(stage.index, stage.name) if self.prior.metadata else None
        if prior is None or prior.fingerprint is None or prior.output_path is None or prior.output_rows is None:
            # StageRecord's validator rejects such files on load; only a bug gets here.
            raise WorkflowError(f"stage {stage.name!r} was planned REUSE but its record is incomplete; run with "
                                "resume=if-possible again")
        record = prior.model_copy(deep=True)
        record.last_action, record.last_reason = StageAction.REUSE.value, step.reason
        empty = record.status is StageStatus.COMPLETED_EMPTY
        files = tuple(resolve_stored(f.file, self.workflow_dir) for f in prior.output_files)
        handoff = Handoff(stage.name, resolve_stored(prior.output_path, self.workflow_dir), prior.output_rows,
                          output_identity(prior.fingerprint, prior.output_files, None), stage.name if empty else None,
                          files)
        handoff = self._apply_override(stage, record, handoff)
        self._save(record)
        self._show_done(f"{stage.name} (reused)", prior.output_rows)
        return handoff, DatasetResults(self.workflow_dir / stage.directory_name)

    def _show_done(self, label: str, rows: int) -> None:
        """A finished progress line, so a workflow shows one line per stage, generated or not."""
        line = self.services.progress()
        line.start(label, total=rows, completed=rows)
        line.finish()

    def _generate(self, stage: StageDefinition, step: StagePlan, parents: Mapping[str, Handoff],
                  cache: ResponseCache | None) -> tuple[Handoff, StageResult]:
        record = self._running_record(stage, step, parents)
        with stage_errors(stage):  # a join key missing, a side input too large
            source = self._seed_source(stage, parents)
        config = stage.with_handoff(source)
        with stage_errors(stage):
            self._validate(config)  # with the real hand-off; before anything of the stage is touched
        self._save(record)
        started = time.perf_counter()
        try:
            dataset = self._run_dataset(stage, step, config, record, cache)
            result = self._finish(stage, record, dataset)
        except BaseException as exc:
            record.status, record.finished_at = StageStatus.FAILED, utc_now()
            record.error = f"{type(exc).__name__}: {exc}" if isinstance(exc, GristmillError) else type(exc).__name__
            record.duration_seconds = round(time.perf_counter() - started, 3)
            self._save(record)
            raise
        record.duration_seconds = round(time.perf_counter() - started, 3)
        self._save(record)
        return result

    def _running_record(self, stage: StageDefinition, step: StagePlan, parents: Mapping[str, Handoff]) -> StageRecord:
        handoff = parents.get(stage.seed_parent) if stage.seed_parent else None
        extra = {p: known for p in stage.extra_parents if (known := parents[p].identity) is not None}
        identity = stage_identity(stage, first_seed_digest=self._seed_digest(stage),
                                  upstream=handoff.identity if handoff else None,
                                  upstream_rows=handoff.rows if handoff else None, parents=extra)
        if identity is None:
            raise WorkflowError(f"internal error: stage {stage.name!r} runs without an upstream output")
        if step.fingerprint is not None and step.fingerprint != identity.fingerprint:
            raise WorkflowError(f"stage {stage.name!r}: its fingerprint changed between planning and running; "
                                "was a seed file or callback output edited during the run? Run again.")
        return StageRecord(
            index=stage.index, name=stage.name, directory=stage.directory_name, status=StageStatus.RUNNING,
            depends_on=list(stage.parents), last_action=step.action.value, last_reason=step.reason,
            fingerprint=identity.fingerprint, fingerprint_components=identity.components,
            run_seed=self.run_seeds[stage.name], requested_rows=identity.inputs.num_records,
            seeded_from=handoff.stage if handoff else None,
            seed_path=stored_path(handoff.path, self.workflow_dir) if handoff and handoff.path else None,
            started_at=utc_now())

    def _seed_source(self, stage: StageDefinition, parents: Mapping[str, Handoff]) -> str | None:
        """The directory holding exactly the seed parent's recorded files, or their rows joined
        with the other parents' outputs and side inputs (see ``workflow/handoff.py``)."""
        handoff = parents.get(stage.seed_parent) if stage.seed_parent else None
        if handoff is None or handoff.path is None:
            return None
        target = handoff_directory(self.workflow_dir, stage.directory_name)
        if not stage.extra_parents:
            return str(link_handoff(handoff.files, target))
        joins = {p: (parents[p].files, key) for p, key in stage.options.join.items()}
        sides = {p: parents[p].files for p in stage.options.side_inputs}
        return str(write_joined_handoff(handoff.files, target, joins=joins, side_inputs=sides))

    def _seed_digest(self, stage: StageDefinition) -> str | None:
        """A root stage's seed digest, read again now: a seed edited since planning is caught."""
        return first_seed_digest([stage]) if not stage.parents else None

    def _validate(self, config: DatasetConfig) -> None:
        seed_columns = seed_column_names(config.seed) if config.seed is not None else []
        self.services.check_config(config, seed_columns)

    def _run_dataset(self, stage: StageDefinition, step: StagePlan, config: DatasetConfig, record: StageRecord,
                     cache: ResponseCache | None) -> DatasetMetadata:
        stage_dir = self.workflow_dir / stage.directory_name
        trash = self.workflow_dir / TRASH_DIR
        if step.action is StageAction.RUN:
            if stage_dir.exists():
                # Never run over stale files, never delete them either: the old directory may hold
                # the user's files; it stays in .trash until `gristmill clean`.
                move_to_trash(stage_dir, trash)
        else:
            clear_post_processing(stage_dir, trash)
        run_config = self.services.run_config.model_copy(update={"seed": record.run_seed, **stage.options.gate()})
        identity = dataset_identity(config, include_seed_source=False)
        num_records = record.requested_rows or 0
        with DirectoryLock(stage_dir):
            stored = None
            if step.action is StageAction.RESUME:  # the dataset planner confirms the stage can continue
                observation = observe_dataset(stage_dir, identity, look_for_earlier=False)
                request = DatasetRequest(num_records, run_config, ResumeMode.ALWAYS)
                decision = plan_dataset(observation, identity, request)
                stored = observation.main.metadata if decision.continues else None
            batch_size = run_config.rows_per_batch(uses_models=stage.uses_models(),
                                                   stored=stored.batch_size if stored else None)
            job = DatasetJob(config=config, layout=DatasetLayout(stage_dir), dataset_name=stage.directory_name,
                             num_records=num_records, identity=identity,
                             run_config=run_config.model_copy(update={"batch_size": batch_size}),
                             cache_scope=stage.name)  # same-named columns of two stages keep their own answers
            return DatasetRun(job, self.services, response_cache=cache, retry_failed=self.retry_failed,
                              label=stage.name).execute(stored)

    def _finish(self, stage: StageDefinition, record: StageRecord,
                dataset: DatasetMetadata) -> tuple[Handoff, StageResult]:
        stage_dir = self.workflow_dir / stage.directory_name
        processed = run_output_processors(stage, stage_dir, [stage_dir / b.file for b in dataset.completed_batches])
        selected = own_output_path(stage, stage_dir)
        if stage.on_success is not None:
            selected, counted = run_callback(stage, stage_dir)
            record.callback_path = stored_path(selected, self.workflow_dir)
            record.output_files = output_file_records([f for f, _ in counted], self.workflow_dir,
                                                      [n for _, n in counted])
        else:
            record.output_files = output_file_records(own_output_files(stage, stage_dir, dataset, processed),
                                                      self.workflow_dir)
        rows = sum(f.rows for f in record.output_files)
        # An override replaces the output for the descendants, so an empty own output is no error then.
        if rows == 0 and not stage.options.allow_empty and stage.name not in self.overrides:
            raise WorkflowError(f"stage {stage.name!r} produced no rows ({selected}); pass allow_empty=True to let "
                                "the workflow stop here, or loosen the filter")
        record.status = StageStatus.COMPLETED if rows else StageStatus.COMPLETED_EMPTY
        record.output_path, record.output_rows = stored_path(selected, self.workflow_dir), rows
        record.actual_rows, record.usage, record.finished_at = dataset.actual_rows, dataset.usage, utc_now()
        if record.fingerprint is None:
            raise WorkflowError(f"internal error: stage {stage.name!r} has no fingerprint")
        files = tuple(resolve_stored(f.file, self.workflow_dir) for f in record.output_files)
        handoff = Handoff(stage.name, selected, rows, output_identity(record.fingerprint, record.output_files, None),
                          None if rows else stage.name, files)
        handoff = self._apply_override(stage, record, handoff)
        return handoff, DatasetResults(stage_dir, dataset)

    def _apply_override(self, stage: StageDefinition, record: StageRecord, handoff: Handoff) -> Handoff:
        override = self.overrides.get(stage.name)
        record.override_path = stored_path(override.path, self.workflow_dir) if override else None
        record.override_sha256 = override.sha256 if override else None
        if override is None or record.fingerprint is None:
            return handoff
        return Handoff(stage.name, override.path, override.rows,
                       output_identity(record.fingerprint, record.output_files, override.sha256),
                       files=tuple(parquet_output_files(override.path)))

    @contextlib.contextmanager
    def _response_cache(self) -> Iterator[ResponseCache | None]:
        """One response cache for the whole workflow, opened only when a running stage calls models."""
        running = [self.stages[s.name] for s in self.plan.stages
                   if s.action in (StageAction.RUN, StageAction.RESUME)]
        needed = any(stage.uses_models() for stage in running)
        with self.services.response_cache(self.workflow_dir / RESPONSE_CACHE_FILE, needed=needed,
                                          move_damaged=self.plan.resume is not ResumeMode.ALWAYS) as cache:
            yield cache
