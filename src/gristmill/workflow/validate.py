"""Static checks of every stage a plan will run, before any stage runs or any directory is cleared.

Checking a config (``EngineServices.check_config``) needs the seed dataset to check the column graph, and the seed of a
downstream stage is the upstream stage's output, which may not exist yet. So each stage that
will RUN or RESUME is checked against what can be known now:

- model aliases (and API key variables) of its LLM columns, always;
- its column graph and processors against the columns it will be seeded with, when those are
  known: the first stage's own seed, the recorded output (or override) of a reused upstream
  stage (parquet footers only), or the output columns a running upstream stage will produce
  (its seed columns plus its generated columns, minus dropped ones, through its output
  processors or selected processor dataset). Behind an ``on_success`` callback, which may
  reshape its output, the columns are unknown and only the aliases are checked.

The runner checks each stage again, fully, with its real hand-off, before clearing its directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.config.processors import SchemaTransformProcessor
from gristmill.engine.processors import columns_to_drop
from gristmill.engine.seeds import seed_column_names
from gristmill.engine.services import EngineServices
from gristmill.errors import ConfigError, GristmillError, WorkflowError
from gristmill.workflow.metadata import resolve_stored
from gristmill.workflow.observe import OverrideInput, PriorState, parquet_output_files
from gristmill.workflow.plan import StageAction, WorkflowPlan
from gristmill.workflow.stage import StageDefinition


def validate_plan(services: EngineServices, stages: Sequence[StageDefinition], plan: WorkflowPlan, prior: PriorState,
                  overrides: Mapping[str, OverrideInput], workflow_dir: Path) -> None:
    """Check every stage the plan will RUN or RESUME; raises the first problem, naming the stage."""
    by_name = {stage.name: stage for stage in stages}
    columns: dict[str, list[str] | None] = {}  # the output columns of each stage, when known
    for step in plan.stages:
        stage = by_name[step.name]
        if step.action is StageAction.SKIP_EMPTY:
            columns[stage.name] = None
            continue
        with stage_errors(stage):
            seed_columns = _seed_columns(stage) if not stage.parents else _handoff_columns(stage, columns)
            if step.action in (StageAction.RUN, StageAction.RESUME):
                services.check_config(stage.config, seed_columns)
        columns[stage.name] = _output_columns(stage, step.action, seed_columns, prior, overrides, workflow_dir)


def _handoff_columns(stage: StageDefinition, outputs: Mapping[str, list[str] | None]) -> list[str] | None:
    """The columns the stage will be seeded with: its seed parent's output, plus what it joins
    (a join key missing on either side is reported now) and its side inputs; None if unknown."""
    seed = outputs.get(stage.seed_parent or "")
    if seed is None:
        return None
    names = list(seed)
    for parent, key in stage.options.join.items():
        joined = outputs.get(parent)
        if key not in seed:
            raise WorkflowError(f"join key {key!r} is not a column of the seed rows from {stage.seed_parent!r} "
                                f"(columns: {seed}); join parent {parent!r} on a column both outputs have")
        if joined is None:
            return None
        if key not in joined:
            raise WorkflowError(f"join key {key!r} is not a column of parent {parent!r}'s output (columns: "
                                f"{joined}); join on a column both outputs have")
        names += [name for name in joined if name not in names]
    return names + list(stage.options.side_inputs)


@contextlib.contextmanager
def stage_errors(stage: StageDefinition) -> Iterator[None]:
    """Prefix a gristmill error raised inside with the stage it belongs to."""
    try:
        yield
    except GristmillError as exc:
        if str(exc).startswith("stage "):
            raise
        try:
            wrapped = type(exc)(f"stage {stage.name!r}: {exc}")
        except TypeError:  # an error class with another signature: keep it as it is
            raise exc from None
        raise wrapped from exc


def _seed_columns(stage: StageDefinition) -> list[str]:
    return seed_column_names(stage.config.seed) if stage.config.seed is not None else []


def _output_columns(stage: StageDefinition, action: StageAction, seed_columns: list[str] | None,
                    prior: PriorState, overrides: Mapping[str, OverrideInput], workflow_dir: Path) -> list[str] | None:
    override = overrides.get(stage.name)
    if override is not None:
        return _file_columns(parquet_output_files(override.path))
    if action is StageAction.REUSE:
        record = prior.metadata.stage(stage.index, stage.name) if prior.metadata else None
        if record is None or not record.output_files:
            return None
        return _file_columns([resolve_stored(record.output_files[0].file, workflow_dir)])
    if stage.on_success is not None or seed_columns is None:
        return None
    return _static_output_columns(stage, seed_columns)


def _file_columns(files: Sequence[Path]) -> list[str] | None:
    if not files:
        return None
    try:
        return list(pq.read_schema(files[0]).names)
    except (pa.ArrowException, OSError):
        return None  # reported by whoever reads it for real


def _static_output_columns(stage: StageDefinition, seed_columns: list[str]) -> list[str] | None:
    config = stage.config
    generated = [name for column in config.columns for name in column.output_columns()]
    names = list(dict.fromkeys([*seed_columns, *generated]))
    flagged = [name for column in config.columns if column.drop for name in column.output_columns()]
    try:
        dropped = set(columns_to_drop(config.processors, names, flagged))
    except ConfigError:
        return None  # reported by the stage's own check
    names = [name for name in names if name not in dropped]
    wanted = stage.selected_processor
    own = {p.name: p for p in config.processors if isinstance(p, SchemaTransformProcessor)}
    if wanted is not None and wanted in own:
        return list(own[wanted].template)
    for proc in stage.output_processors:
        if isinstance(proc, SchemaTransformProcessor):
            names = list(proc.template)
        else:
            try:
                drop = set(columns_to_drop([proc], names))
            except ConfigError:
                return None
            names = [name for name in names if name not in drop]
        if proc.name == wanted:
            break
    return names
