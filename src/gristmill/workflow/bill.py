"""The bill of a workflow run, per stage and model, from its plan: nothing is run or written.

A stage whose inputs are known (a root stage, or one whose parents are all REUSEd, so their
recorded output files are what it will read) is billed exactly: its batches are walked as the
run would build them and every prompt is looked up in the workflow's response cache
(``engine/bill.py``). A stage behind one that will run cannot know its prompts yet: its bill is
an upper bound, rows x LLM columns x (1 + max_corrections), never under what the run sends.
REUSE and SKIP_EMPTY stages send nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from gristmill.config.run import ResumeMode
from gristmill.engine.bill import ColumnBill, DatasetBill, batch_specs, count_requests, gate_rounds
from gristmill.engine.seeds import SeedReader
from gristmill.engine.services import EngineServices
from gristmill.llm.pricing import format_cost
from gristmill.storage.layout import RESPONSE_CACHE_FILE, DatasetLayout
from gristmill.storage.metadata import BatchSpec, DatasetMetadata
from gristmill.storage.tables import read_parquet_checked
from gristmill.workflow.handoff import left_join, with_side_input
from gristmill.workflow.metadata import resolve_stored
from gristmill.workflow.observe import OverrideInput, PriorState, observe_workflow, parquet_output_files
from gristmill.workflow.plan import StageAction, StagePlan, WorkflowPlan
from gristmill.workflow.stage import StageDefinition


@dataclass(frozen=True)
class StageBill:
    """One stage's action and the bill of its dataset run."""

    name: str
    action: StageAction
    bill: DatasetBill

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "action": self.action.value, **self.bill.to_dict()}


@dataclass(frozen=True)
class WorkflowBill:
    """Per stage bills and the totals of the run."""

    stages: tuple[StageBill, ...]

    def __getitem__(self, name: str) -> StageBill:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def requests(self) -> int:
        return sum(s.bill.requests for s in self.stages)

    @property
    def cached(self) -> int:
        return sum(s.bill.cached for s in self.stages)

    @property
    def upper_bound(self) -> int:
        return sum(s.bill.upper_bound for s in self.stages)

    @property
    def cost(self) -> float | None:
        costs = [s.bill.cost for s in self.stages if s.bill.cost is not None]
        return sum(costs) if costs else None

    def by_model(self) -> dict[str, dict[str, int]]:
        """Requests, cached answers and the upper bound per model alias, over every stage."""
        out: dict[str, dict[str, int]] = {}
        for stage in self.stages:
            for model, counts in stage.bill.by_model().items():
                entry = out.setdefault(model, {"requests": 0, "cached": 0, "upper_bound": 0})
                for key, value in counts.items():
                    entry[key] += value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "cached": self.cached, "upper_bound": self.upper_bound,
                "cost": self.cost, "by_model": self.by_model(), "stages": [s.to_dict() for s in self.stages]}

    def format_lines(self) -> list[str]:
        """Per stage and model, then the totals, for a terminal."""
        lines = []
        for stage in self.stages:
            bill = stage.bill
            if not bill.columns:
                continue
            kind = "exact" if bill.exact else "upper bound: its inputs come from a stage that runs first"
            lines.append(f"{stage.name}: {bill.requests} to pay, {bill.cached} from cache, at most "
                         f"{bill.upper_bound} ({kind})")
            lines += [f"  {line}" for line in bill.format_lines()]
            if bill.note:
                lines.append(f"  note: {bill.note}")
        for model, counts in sorted(self.by_model().items()):
            lines.append(f"total {model}: {counts['requests']} to pay, {counts['cached']} from cache, at most "
                         f"{counts['upper_bound']}")
        if self.cost is not None:
            lines.append(f"estimated cost: ~{format_cost(self.cost)}")
        return lines


def workflow_bill(services: EngineServices, stages: Sequence[StageDefinition], plan: WorkflowPlan, *,
                  workflow_name: str, run_seeds: Mapping[str, int],
                  overrides: Mapping[str, OverrideInput] | None = None) -> WorkflowBill:
    """The bill of running ``plan`` (made by ``CompositeWorkflow.plan``); reads stored state only."""
    if plan.directory is None:
        raise ValueError("internal error: a bill needs the plan's workflow directory")
    workflow_dir = Path(plan.directory)
    prior = observe_workflow(workflow_dir, workflow_name, stages, read_prior=plan.resume is not ResumeMode.NEVER)
    billing = _Billing(services, {s.name: s for s in stages}, prior, workflow_dir, run_seeds, overrides or {},
                       fresh=plan.resume is ResumeMode.NEVER)
    return WorkflowBill(tuple(billing.stage(step) for step in plan.stages))


class _Billing:
    """Walks the plan in order, remembering which stages' outputs are known (reused) files."""

    def __init__(self, services: EngineServices, stages: Mapping[str, StageDefinition], prior: PriorState,
                 workflow_dir: Path, run_seeds: Mapping[str, int], overrides: Mapping[str, OverrideInput], *,
                 fresh: bool) -> None:
        self.services, self.stages, self.prior = services, stages, prior
        self.workflow_dir, self.run_seeds, self.overrides = workflow_dir, run_seeds, overrides
        # resume=never runs in a new directory, whose response cache starts empty.
        self.cache_files = [] if fresh else [workflow_dir / RESPONSE_CACHE_FILE]
        self.outputs: dict[str, list[Path] | None] = {}  # None: produced by this run, unknown now
        self.rows: dict[str, int] = {}  # output rows, or an upper bound of them

    def stage(self, step: StagePlan) -> StageBill:
        stage = self.stages[step.name]
        if step.action in (StageAction.REUSE, StageAction.SKIP_EMPTY):
            self._reused(stage)
            return StageBill(step.name, step.action, DatasetBill(step.action.value, step.reason, rows=0))
        self.outputs[stage.name] = None
        seed = self._seed_table(stage)
        if seed is None and stage.parents:
            bill = self._bound(stage, step)
        else:
            bill = self._exact(stage, step, seed)
        self.rows[stage.name] = bill.rows
        return StageBill(step.name, step.action, bill)

    def _reused(self, stage: StageDefinition) -> None:
        override = self.overrides.get(stage.name)
        record = self.prior.metadata.stage(stage.index, stage.name) if self.prior.metadata else None
        if override is not None:
            self.outputs[stage.name], self.rows[stage.name] = parquet_output_files(override.path), override.rows
        elif record is not None:
            self.outputs[stage.name] = [resolve_stored(f.file, self.workflow_dir) for f in record.output_files]
            self.rows[stage.name] = record.output_rows or 0
        else:
            self.outputs[stage.name], self.rows[stage.name] = [], 0

    def _seed_table(self, stage: StageDefinition) -> pa.Table | None:
        """The rows the stage will be seeded with, when every parent's output is known files."""
        if not stage.parents or stage.options.selection_strategy is not None:
            return None
        files = {p: self.outputs.get(p) for p in stage.parents}
        if any(f is None for f in files.values()):
            return None
        table = _read(files[stage.seed_parent or stage.parents[0]] or [])
        for parent, key in stage.options.join.items():
            table = left_join(table, _read(files[parent] or []), parent=parent, key=key)
        for parent in stage.options.side_inputs:
            table = with_side_input(table, _read(files[parent] or []), parent=parent)
        return table

    def _exact(self, stage: StageDefinition, step: StagePlan, seed: pa.Table | None) -> DatasetBill:
        run_seed, specs = self._batches(stage, step, seed.num_rows if seed is not None else None)
        run_config = self.services.run_config.model_copy(update={"seed": run_seed, **stage.options.gate()})
        config = stage.with_handoff("<hand-off>") if seed is not None else stage.config
        reader = SeedReader(seed, stage.options.sampling_strategy, run_seed) if seed is not None else None
        bill = count_requests(self.services, config, specs=specs, run_config=run_config,
                              cache_files=self.cache_files, cache_scope=stage.name, seed=reader)
        built = sum(s.row_offset + s.rows for s in specs[-1:]) if specs else 0  # the last batch ends the rows
        note = gate_rounds(bill.columns, run_config, built_rows=built)
        return DatasetBill(step.action.value, step.reason, bill.rows, bill.columns, bill.prices, note)

    def _batches(self, stage: StageDefinition, step: StagePlan, seed_rows: int | None) -> tuple[int, list[BatchSpec]]:
        """(run seed, batches to build): a resumed stage continues its stored dataset."""
        rows = step.num_records or stage.options.num_records or seed_rows or 0
        if step.action is StageAction.RESUME:
            meta = DatasetMetadata.load(DatasetLayout(self.workflow_dir / stage.directory_name).metadata_path)
            meta.plan_rows(rows)
            return meta.run_seed, meta.missing_batches()
        return self.run_seeds[stage.name], batch_specs(
            rows, self.services.run_config.rows_per_batch(uses_models=stage.uses_models()))

    def _bound(self, stage: StageDefinition, step: StagePlan) -> DatasetBill:
        """rows x LLM columns x (1 + max_corrections): its prompts read answers not known yet."""
        options = stage.options
        rows = step.num_records or options.num_records or self.rows.get(stage.seed_parent or "", 0)
        if options.target_valid_records is not None:
            rows = max(rows, options.max_records or 10 * options.target_valid_records)
        columns = tuple(ColumnBill(c.name, alias, max_corrections=getattr(c, "max_corrections", 0), cells=rows,
                                   unknown=rows)
                        for c in stage.config.columns for alias in sorted(c.model_aliases()))
        callbacks = [p for p in stage.parents if self.stages[p].options.on_success is not None]
        note = (f"the on_success callback of {callbacks[0]!r} decides how many rows this stage gets; counted "
                "with the rows its own run makes") if callbacks else None
        return DatasetBill(step.action.value, step.reason, rows, columns, note=note)


def _read(files: Sequence[Path]) -> pa.Table:
    tables = [read_parquet_checked(path) for path in files]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
