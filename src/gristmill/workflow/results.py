"""``WorkflowResults``: what ``CompositeWorkflow.run`` returns.

A mapping of stage name to ``DatasetResults`` (the stage's dataset, read from disk, also for
reused stages) or ``SkippedStageResult``. The loading and export helpers follow each stage's
*selected* output: an output processor's dataset, a named processor output, a callback's
output, or an approved override.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gristmill.errors import WorkflowError
from gristmill.report import write_workflow_report
from gristmill.results import DatasetResults, count_parquet_rows, export_tables, iter_parquet_tables, read_parquet_files
from gristmill.workflow.metadata import StageRecord, WorkflowMetadata, resolve_stored
from gristmill.workflow.observe import parquet_output_files
from gristmill.workflow.plan import WorkflowPlan


@dataclass(frozen=True)
class SkippedStageResult:
    """A stage that did not run because an upstream stage produced no rows (``allow_empty``)."""

    stage: str
    upstream_stage: str
    status: str = "skipped_empty_upstream"

    def count_records(self) -> int:
        return 0

    def load_dataset(self) -> pd.DataFrame:
        return pd.DataFrame()


StageResult = DatasetResults | SkippedStageResult


class WorkflowResults(Mapping[str, StageResult]):
    """Stage name -> results, in stage order; ``final_result`` is the last stage run.

    >>> out = wf.run(resume=gm.ResumeMode.IF_POSSIBLE)      # doctest: +SKIP
    >>> out["personas"].count_records(); out.load_dataset(); out.export("final.jsonl")  # doctest: +SKIP
    """

    def __init__(self, workflow_dir: Path, metadata: WorkflowMetadata,
                 results: Mapping[str, StageResult], *, plan: WorkflowPlan | None = None) -> None:
        self.workflow_dir = Path(workflow_dir)
        self.plan = plan  # the plan this run executed
        self.metadata = metadata
        self._results = dict(results)

    def __getitem__(self, name: str) -> StageResult:
        try:
            return self._results[name]
        except KeyError:
            raise KeyError(f"no stage {name!r} in these results; stages: {list(self._results)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def report(self, path: str | Path | None = None) -> Path:
        """Write the workflow's HTML report: stage graph with this run's reasons, then each stage."""
        reasons = {s.name: s.reason for s in self.plan.stages} if self.plan is not None else None
        return write_workflow_report(self.workflow_dir, path, reasons=reasons)

    def stage_usage(self, name: str) -> dict[str, dict[str, int]]:
        """Model usage of a stage's dataset, over every run of it (empty for a skipped stage)."""
        result = self[name]
        return result.usage if isinstance(result, DatasetResults) else {}

    def stage_cost(self, name: str) -> float | None:
        """Cost of a stage's dataset at its models' prices; None without prices (or when skipped)."""
        result = self[name]
        return result.cost if isinstance(result, DatasetResults) else None

    @property
    def cost(self) -> float | None:
        """Total cost of the stages in these results; None when no stage has a priced model."""
        costs = [cost for name in self._results if (cost := self.stage_cost(name)) is not None]
        return sum(costs) if costs else None

    @property
    def final_result(self) -> StageResult:
        """Results of the last stage this run materialised (or skipped)."""
        if not self._results:
            raise WorkflowError("the workflow produced no stage results")
        return self._results[list(self._results)[-1]]

    @property
    def final_stage(self) -> str:
        return list(self._results)[-1]

    def _record(self, name: str) -> StageRecord:
        self[name]  # a clear KeyError for unknown names
        for record in self.metadata.stages:
            if record.name == name:
                return record
        raise WorkflowError(f"stage {name!r} has no record in {self.workflow_dir}")

    def get_stage_output_path(self, name: str) -> Path:
        """The stage's selected output (a parquet file or directory); override first if one was used."""
        record = self._record(name)
        stored = record.override_path or record.output_path
        if stored is None:
            raise WorkflowError(f"stage {name!r} has no output (status {record.status.value})")
        return resolve_stored(stored, self.workflow_dir)

    def stage_output_files(self, name: str) -> list[Path]:
        """Parquet files of the stage's selected output, in order."""
        record = self._record(name)
        if record.override_path is None and record.output_files:
            return [resolve_stored(f.file, self.workflow_dir) for f in record.output_files]
        if record.override_path is None and record.output_path is None:
            return []
        return parquet_output_files(self.get_stage_output_path(name))

    def load_stage_output(self, name: str) -> pd.DataFrame:
        """The stage's selected output as a DataFrame (empty for a skipped stage)."""
        return read_parquet_files(self.stage_output_files(name))

    def count_stage_records(self, name: str) -> int:
        return count_parquet_rows(self.stage_output_files(name))

    def load_dataset(self) -> pd.DataFrame:
        """The final stage's selected output as a DataFrame."""
        return self.load_stage_output(self.final_stage)

    def count_records(self) -> int:
        """Rows of the final stage's selected output (parquet footers only)."""
        return self.count_stage_records(self.final_stage)

    def export(self, path: str | Path, format: str | None = None) -> Path:  # noqa: A002 - public API name
        """Write the final stage's selected output to one jsonl / csv / parquet file."""
        return self.export_stage(self.final_stage, path, format)

    def export_stage(self, name: str, path: str | Path, format: str | None = None) -> Path:  # noqa: A002
        """Write a stage's selected output to one jsonl / csv / parquet file, file by file."""
        files = self.stage_output_files(name)
        if not files:
            raise WorkflowError(f"stage {name!r} has no output to export (status {self._record(name).status.value})")
        return export_tables(iter_parquet_tables(files), path, format)

    def __repr__(self) -> str:
        parts = ", ".join(f"{r.name}={r.status.value}" for r in self.metadata.stages if r.name in self._results)
        return f"WorkflowResults({str(self.workflow_dir)!r}, {parts})"
