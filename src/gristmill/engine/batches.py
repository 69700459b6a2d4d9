"""Build one batch in memory: seed rows, then every column in dependency order, then processors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.config.columns import ColumnConfig, skip_template, template_variables
from gristmill.config.dataset import DatasetConfig
from gristmill.engine.cells import (
    ERRORS_COLUMN,
    FAILED_COLUMN,
    ROW_COLUMN,
    CellGate,
    blank,
    errors_array,
    failed_rows,
    forget,
    merge,
    note_skipped,
    problems_of,
    read_errors,
    skip_mask,
    skip_mask_of,
)
from gristmill.engine.generators.base import (
    BatchFrame,
    CellProblem,
    ColumnGenerator,
    ColumnValues,
    EngineContext,
    GeneratorFactory,
    GroupGeneratorFactory,
    generator_factory,
)
from gristmill.engine.graph import generation_order
from gristmill.engine.processors import ProcessedBatch, apply_processors, check_processors, columns_to_drop
from gristmill.engine.sandbox import TemplateLimits
from gristmill.engine.seeds import SeedReader
from gristmill.errors import ConfigError, GenerationError


def check_columns(config: DatasetConfig, seed_columns: Sequence[str] = ()) -> list[ColumnConfig]:
    """Static checks of the column graph; returns the generation order. Raises ConfigError."""
    order = generation_order(config.columns, available=seed_columns)
    for kind, factory in _factories(config).items():
        if isinstance(factory, GroupGeneratorFactory):
            factory.check_group(_of_type(config.columns, kind), config, seed_columns)
    for column in config.columns:
        column.check_ready()  # e.g. an unimportable function is a config error now, not at batch 0
    output_names = list(seed_columns) + [o for c in config.columns for o in c.output_columns()]
    columns_to_drop(config.processors, output_names)  # a drop pattern matching nothing is an error
    for proc in config.processors:
        missing = sorted(proc.required_columns() - set(output_names))
        if missing:
            raise ConfigError(f"processor {proc.name!r} references missing column(s) {missing}")
    check_processors(config.processors)
    return order


def _factories(config: DatasetConfig) -> dict[str, GeneratorFactory | GroupGeneratorFactory]:
    """The generator factory of every column type in the config, so a missing one fails before any work."""
    kinds = [c.column_type for c in config.columns]
    if config.constraints:
        # Constraints are enforced by the sampler group, so it checks them even without sampler columns.
        kinds.append("sampler")
    return {kind: generator_factory(kind) for kind in dict.fromkeys(kinds)}


def _of_type(columns: Sequence[ColumnConfig], kind: str) -> list[ColumnConfig]:
    return [c for c in columns if c.column_type == kind]


@dataclass(frozen=True)
class _Step:
    """One generator and the columns it produces: a group generator has several."""

    source: str
    generator: ColumnGenerator
    columns: tuple[ColumnConfig, ...]
    group: bool


@dataclass
class BatchPlan:
    """Everything needed to build any batch of a dataset, prepared once per run.

    ``steps`` run in order: group generators (one per grouped column type, e.g. all samplers
    with their constraints) first, then one generator per other column in dependency order.
    Around each step the plan decides which cells are generated (``engine/cells.py``).
    """

    config: DatasetConfig
    seed: SeedReader | None
    steps: list[_Step]
    output_names: list[str]
    drop: list[str]
    limits: TemplateLimits
    track_errors: bool  # the dataset has an ``__errors`` column
    on_failed_rows: str = "keep"
    gated: bool = False  # target_valid_records: only rows that pass stay in the dataset
    valid_filter: str | None = None
    validations: tuple[str, ...] = ()  # validation columns, whose is_valid a row must have without a filter

    @property
    def generators(self) -> list[tuple[str, ColumnGenerator]]:
        return [(step.source, step.generator) for step in self.steps]

    @classmethod
    def prepare(cls, config: DatasetConfig, context: EngineContext, seed: SeedReader | None) -> BatchPlan:
        seed_all = list(seed.table.column_names) if seed is not None else []
        seed_names = [n for n in seed_all if n != ERRORS_COLUMN]
        order = check_columns(config, seed_names)
        factories = _factories(config)
        steps: list[_Step] = []
        for kind, factory in factories.items():
            members = _of_type(order, kind)
            if isinstance(factory, GroupGeneratorFactory) and members:
                _check_group_skips(members, seed_names)
                steps.append(_Step(f"{kind} columns", factory.build_group(members, config, context),
                                   tuple(members), True))
        for column in order:
            factory = factories[column.column_type]
            if not isinstance(factory, GroupGeneratorFactory):
                steps.append(_Step(column.name, factory(column, context), (column,), False))
        track = ERRORS_COLUMN in seed_all or any(c.may_fail for c in config.columns)
        generated = [name for c in config.columns for name in c.output_columns()]
        output_names = seed_names + generated
        run = context.run_config
        gated = run.target_valid_records is not None
        policy = "drop" if gated else run.on_failed_rows  # under a gate, rows that do not pass move out
        if track and policy == "mark":  # every batch has both columns; otherwise __errors only where needed
            output_names += [ERRORS_COLUMN, FAILED_COLUMN]
        flagged = [name for c in config.columns if c.drop for name in c.output_columns()]
        drop = columns_to_drop(config.processors, output_names, flagged)
        validations = tuple(c.name for c in config.columns if c.column_type == "validation")
        if run.valid_filter is not None:
            known = set(seed_names) | set(generated)
            missing = sorted(template_variables(skip_template(run.valid_filter)) - known)
            if missing:
                raise ConfigError(f"valid_filter {run.valid_filter!r} reads {missing}, which are not columns")
        return cls(config, seed, steps, output_names, drop, TemplateLimits.from_run_config(run), track, policy,
                   gated, run.valid_filter, validations)

    async def build(self, *, batch_index: int, row_offset: int, num_rows: int, run_seed: int) -> ProcessedBatch:
        frame = BatchFrame(batch_index=batch_index, row_offset=row_offset, num_rows=num_rows, run_seed=run_seed)
        gate = CellGate(num_rows)
        if self.seed is not None:
            seed_rows = self.seed.rows_for(row_offset, num_rows)
            for name in seed_rows.column_names:
                if name == ERRORS_COLUMN:
                    read_errors(frame, seed_rows.column(name))
                else:
                    frame.set(name, seed_rows.column(name))
            _seed_failures(frame, gate)
        everything = np.ones(num_rows, dtype=bool)
        for step in self.steps:
            await self._run_step(step, frame, gate, everything)
        return self._finish(frame)

    async def retry(self, table: pa.Table, *, batch_index: int, row_offset: int, run_seed: int) -> ProcessedBatch:
        """Regenerate the cells ``table``'s ``__errors`` lists (failed cells and the cells they
        blocked), in place: every other cell keeps its value and costs nothing."""
        frame = self._frame_of(table, batch_index=batch_index, row_offset=row_offset, run_seed=run_seed)
        listed: dict[str, np.ndarray] = {}
        for row, problems in frame.problems.items():
            for problem in problems:
                listed.setdefault(problem.column, np.zeros(frame.num_rows, dtype=bool))[row] = True
        gate = CellGate(frame.num_rows)
        _seed_failures(frame, gate, only=set(listed) - {o for s in self.steps for c in s.columns
                                                         for o in c.output_columns()})
        for step in self.steps:
            names = [c.name for c in step.columns]
            redo = np.zeros(frame.num_rows, dtype=bool)
            for name in names:
                redo |= listed.get(name, redo)
            if not step.group:
                redo |= _blocked_rows(step.columns[0], gate)  # a cell that now reads a failed retry
            if redo.any():
                forget(frame, names, redo)
                await self._run_step(step, frame, gate, redo)
        return self._finish(frame)

    def refinish(self, table: pa.Table, *, batch_index: int, row_offset: int, run_seed: int,
                 surplus: int) -> ProcessedBatch:
        """The batch ``table`` (as stored before processors) split again, with its last ``surplus``
        rows that passed marked as surplus: the tables of a trimmed batch, nothing regenerated."""
        frame = self._frame_of(table, batch_index=batch_index, row_offset=row_offset, run_seed=run_seed)
        kept = [i for i in range(frame.num_rows) if not frame.problems.get(i)]
        reason = "passed, but the dataset already holds target_valid_records rows"
        for i in kept[len(kept) - surplus:] if surplus > 0 else []:
            frame.problems[i] = [CellProblem("", "surplus", reason, 0)]
        return self._finish(frame)

    def _frame_of(self, table: pa.Table, *, batch_index: int, row_offset: int, run_seed: int) -> BatchFrame:
        """A frame holding a stored batch's columns and its recorded problems."""
        frame = BatchFrame(batch_index=batch_index, row_offset=row_offset, num_rows=table.num_rows,
                           run_seed=run_seed)
        for name in table.column_names:
            if name not in (ERRORS_COLUMN, FAILED_COLUMN):
                frame.set(name, table.column(name))
        if ERRORS_COLUMN in table.column_names:
            read_errors(frame, table.column(ERRORS_COLUMN))
        return frame

    async def _run_step(self, step: _Step, frame: BatchFrame, gate: CellGate, rows: np.ndarray) -> None:
        """Generate ``step``'s cells in ``rows`` (all rows on a first build; a retry's rows otherwise)."""
        if step.group:  # samplers: drawn for every row (free, and a group cannot leave rows out)
            values = await step.generator.generate(frame)
            self._check_lengths(frame, step.source, values)
            for column in step.columns:
                failed, skipped, _ = gate.blocked_by(column)
                skipped |= skip_mask(column, frame, ~failed & ~skipped, self.limits)
                for name in column.output_columns():
                    if name in values:
                        frame.set(name, _placed(frame, name, blank(values[name], failed | skipped), rows))
                gate.record(column.output_columns(), failed, skipped)
            return
        column = step.columns[0]
        failed, skipped, sources = gate.blocked_by(column)
        skipped |= skip_mask(column, frame, ~failed & ~skipped & rows, self.limits)
        note_skipped(frame, column.name, failed & rows, sources)
        frame.active, frame.current = rows & ~failed & ~skipped, column.name
        try:
            values = await step.generator.generate(frame)
        finally:
            frame.active, frame.current = None, ""
        self._check_lengths(frame, step.source, values)
        failed = failed | problems_of(frame, column.name)
        for name, column_values in values.items():
            frame.set(name, _placed(frame, name, blank(column_values, failed | skipped), rows))
        gate.record(column.output_columns(), failed, skipped)

    def _finish(self, frame: BatchFrame) -> ProcessedBatch:
        """The batch's tables: ``__errors`` where a cell failed, then the failed-rows policy, then processors."""
        names = list(self.output_names)
        if self.gated:
            self._reject(frame)
        if self.on_failed_rows == "mark" and self.track_errors:
            errors = errors_array(frame)
            frame.set(ERRORS_COLUMN, errors)
            frame.set(FAILED_COLUMN, pa.array(failed_rows(errors)))
        elif frame.problems:
            frame.set(ERRORS_COLUMN, errors_array(frame))
            names.append(ERRORS_COLUMN)
        table = pa.table({name: _to_arrow(name, frame.columns[name]) for name in names})
        dropped_rows = None
        if self.on_failed_rows == "drop" and ERRORS_COLUMN in names:
            bad = failed_rows(table.column(ERRORS_COLUMN))
            rows = pa.array(np.arange(frame.row_offset, frame.row_offset + frame.num_rows, dtype=np.int64))
            dropped_rows = table.append_column(ROW_COLUMN, rows).filter(pa.array(bad))
            table = table.filter(pa.array(~bad)).drop_columns([ERRORS_COLUMN])
        batch = apply_processors(table, self.config.processors, [d for d in self.drop if d in table.column_names])
        batch.dropped_rows = dropped_rows
        return batch

    def _reject(self, frame: BatchFrame) -> None:
        """Record, in ``__errors``, the rows that do not pass the gate of ``target_valid_records``."""
        if self.valid_filter is not None:
            passed = skip_mask_of(self.valid_filter, frame, self.limits)
            gate, why = "valid_filter", f"valid_filter {self.valid_filter!r} does not hold"
        else:
            passed = np.ones(frame.num_rows, dtype=bool)
            for name in self.validations:
                passed &= np.array([bool(v and v.get("is_valid")) for v in frame.pylist(name)], dtype=bool)
            gate, why = ", ".join(self.validations), "is_valid is not true"
        for row in np.flatnonzero(~passed):
            if not frame.problems.get(int(row)):  # a row with a failed cell is out already
                frame.problems[int(row)] = [CellProblem(gate, "rejected", why, 0)]

    @staticmethod
    def _check_lengths(frame: BatchFrame, source: str, values: dict[str, ColumnValues]) -> None:
        for name, column_values in values.items():
            if len(column_values) != frame.num_rows:
                raise GenerationError(f"{source} produced {len(column_values)} values for {name!r} in a batch of "
                                      f"{frame.num_rows} rows")


def _placed(frame: BatchFrame, name: str, values: ColumnValues, rows: np.ndarray) -> ColumnValues:
    """New values of ``name`` in ``rows``; the frame's current values elsewhere (a retry)."""
    if rows.all() or name not in frame.columns:
        return values
    return merge(frame.columns[name], values, rows)


def _blocked_rows(column: ColumnConfig, gate: CellGate) -> np.ndarray:
    failed, _, _ = gate.blocked_by(column)
    return failed


def _seed_failures(frame: BatchFrame, gate: CellGate, only: set[str] | None = None) -> None:
    """Cells a seed holds that failed upstream (its ``__errors``) count as failed here: columns
    reading them are skipped and not paid for."""
    for row, problems in frame.problems.items():
        for problem in problems:
            if problem.column in frame.columns and (only is None or problem.column in only):
                gate.failed.setdefault(problem.column, np.zeros(frame.num_rows, dtype=bool))[row] = True


def _check_group_skips(members: Sequence[ColumnConfig], seed_names: Sequence[str]) -> None:
    known = {o for c in members for o in c.output_columns()} | set(seed_names)
    for column in members:
        late = sorted(column.skip_columns() - known)
        if late:
            raise ConfigError(f"column {column.name!r}: its skip condition reads {late}; a {column.column_type} "
                              f"column is generated before those, so its condition may read only seed columns "
                              f"and other {column.column_type} columns")


def _to_arrow(name: str, values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        if isinstance(values, np.ndarray) and values.dtype.kind in "OU":
            return pa.array(values.tolist())
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise GenerationError(f"column {name!r} holds values of mixed types that parquet cannot store "
                              f"together ({exc}); make the column return one type") from None
