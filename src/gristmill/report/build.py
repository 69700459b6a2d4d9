"""Read a dataset or workflow directory and write its report: one self-contained HTML file.

The report reads only what runs wrote (``metadata.json``, ``config.json``, the parquet files,
``workflow-metadata.json``), so it works on a directory copied from elsewhere and never
contacts a model. It sits below ``results`` and ``workflow`` (their ``report()`` methods call
it), so it reads the workflow metadata through a view of the fields it shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gristmill.errors import ArtifactError
from gristmill.report.charts import DagNode, dag_svg
from gristmill.report.page import columns_section, page, samples_section, table_html, usage_section
from gristmill.report.profile import profile_table
from gristmill.storage.atomic import write_text_atomic
from gristmill.storage.layout import CONFIG_FILE, METADATA_FILE, DatasetLayout
from gristmill.storage.metadata import DatasetMetadata
from gristmill.storage.tables import drop_pandas_index, read_parquet_checked

REPORT_FILE = "report.html"
WORKFLOW_METADATA_FILE = "workflow-metadata.json"  # gristmill.workflow.metadata, a layer above this one
PRICE_FIELDS = ("input_cost_per_million", "output_cost_per_million")


def write_dataset_report(dataset_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write the report of a dataset directory (default ``<dataset_dir>/report.html``); returns its path.

    >>> write_dataset_report("artifacts/reviews")  # doctest: +SKIP
    PosixPath('artifacts/reviews/report.html')
    """
    root = Path(dataset_dir)
    meta = DatasetMetadata.load(DatasetLayout(root).metadata_path)
    config = read_config(root)
    facts = [("dataset", str(root)), ("rows", f"{meta.actual_rows:,} of {meta.target_rows:,}"),
             ("status", meta.status.value), ("generated", _when(meta.updated_at))]
    files = [root / batch.file for batch in meta.completed_batches]
    html = page(f"Dataset report: {meta.dataset_name}", facts, dataset_sections(files, config, meta.usage))
    return _write(Path(path) if path is not None else root / REPORT_FILE, html)


def write_workflow_report(workflow_dir: str | Path, path: str | Path | None = None, *,
                          reasons: Mapping[str, str] | None = None) -> Path:
    """Write the report of a workflow directory (default ``<workflow_dir>/report.html``): the stage
    graph, then a section per stage with why the last run did what it did: ``reasons`` (stage ->
    reason) when given, else the reasons the workflow metadata recorded."""
    root = Path(workflow_dir)
    view = read_workflow(root)
    why = dict(reasons) if reasons is not None else {s.name: s.last_reason for s in view.stages if s.last_reason}
    total = sum_usage(stage.usage for stage in view.stages)
    users: dict[str, list[str]] = {}
    for stage in view.stages:
        for model, names in columns_by_model(read_config(root / stage.directory)).items():
            users.setdefault(model, []).extend(f"{stage.name}/{name}" for name in names)
    facts = [("workflow", str(root)), ("stages", str(len(view.stages))), ("updated", _when(view.updated_at))]
    sections = [stages_section(view, why), usage_section(total, {}, users, heading="Model usage, all stages")]
    sections += [stage_section(root, stage, why.get(stage.name)) for stage in view.stages]
    return _write(Path(path) if path is not None else root / REPORT_FILE,
                  page(f"Workflow report: {view.workflow_name}", facts, sections))


def report_kind(directory: str | Path) -> str:
    """'dataset' or 'workflow', from the metadata file the directory holds."""
    root = Path(directory)
    if (root / WORKFLOW_METADATA_FILE).is_file():
        return "workflow"
    if (root / METADATA_FILE).is_file():
        return "dataset"
    raise ArtifactError(f"{root} holds neither {METADATA_FILE} (a dataset) nor {WORKFLOW_METADATA_FILE} (a workflow); "
                        "pass the directory a create() or workflow run wrote")


def _write(path: Path, html: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, html)
    return path


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "unknown"


# ----------------------------------------------------------------------------------------- dataset

def read_config(root: Path) -> dict[str, Any]:
    """``config.json`` as stored ({} when absent): column types, model aliases and prices."""
    path = root / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not readable JSON ({exc}); restore it or rerun the dataset") from None
    return raw if isinstance(raw, dict) else {}


def load_table(files: Sequence[Path]) -> pa.Table:
    """All files as one table; a column missing from some batches is null there."""
    tables = [drop_pandas_index(read_parquet_checked(f)) for f in files]
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def dataset_sections(files: Sequence[Path], config: Mapping[str, Any],
                     usage: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Usage, columns and sample records of the rows in ``files``."""
    table = load_table(files)
    columns = [c for c in config.get("columns", []) if isinstance(c, dict)]
    types = {str(c.get("name")): str(c.get("column_type")) for c in columns}
    return [usage_section(usage, model_costs(config, usage), columns_by_model(config)),
            columns_section(profile_table(table, types)), samples_section(table)]


def columns_by_model(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Model alias -> the names of the config's columns that use it, in config order."""
    by_model: dict[str, list[str]] = {}
    for column in config.get("columns", []):
        if isinstance(column, dict) and column.get("model_alias"):
            by_model.setdefault(str(column["model_alias"]), []).append(str(column.get("name")))
    return by_model


def model_costs(config: Mapping[str, Any], usage: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Alias -> cost in USD, for the models whose config carries prices per million tokens."""
    costs = {}
    for model in config.get("models", []):
        if not isinstance(model, dict) or str(model.get("alias")) not in usage:
            continue
        prices = [model.get(name) for name in PRICE_FIELDS]
        if any(p is not None for p in prices):
            counts = usage[str(model["alias"])]
            costs[str(model["alias"])] = (counts.get("input_tokens", 0) * float(prices[0] or 0)
                                          + counts.get("output_tokens", 0) * float(prices[1] or 0)) / 1e6
    return costs


def sum_usage(usages: Any) -> dict[str, dict[str, int]]:
    """Counters added up per model."""
    total: dict[str, dict[str, int]] = {}
    for usage in usages:
        for model, counts in usage.items():
            into = total.setdefault(model, {})
            for key, value in counts.items():
                into[key] = into.get(key, 0) + value
    return total


# ---------------------------------------------------------------------------------------- workflow

class OutputFileView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file: str


class StageView(BaseModel):
    """The fields of a stage record the report shows (``workflow.metadata.StageRecord``)."""

    model_config = ConfigDict(extra="ignore")

    index: int
    name: str
    directory: str
    depends_on: list[str] = Field(default_factory=list)
    status: str
    last_action: str | None = None
    last_reason: str | None = None
    seeded_from: str | None = None
    output_rows: int | None = None
    output_files: list[OutputFileView] = Field(default_factory=list)
    override_path: str | None = None
    upstream_stage: str | None = None
    duration_seconds: float | None = None
    usage: dict[str, dict[str, int]] = Field(default_factory=dict)
    error: str | None = None


class WorkflowView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    workflow_name: str
    updated_at: datetime | None = None
    stages: list[StageView] = Field(default_factory=list)


def read_workflow(root: Path) -> WorkflowView:
    path = root / WORKFLOW_METADATA_FILE
    try:
        return WorkflowView.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist: {root} holds no gristmill workflow") from None
    except (OSError, ValidationError) as exc:
        raise ArtifactError(f"{path} is not readable workflow metadata ({str(exc).splitlines()[0]}); "
                            "rerun the workflow to rewrite it") from None


def stages_section(view: WorkflowView, reasons: Mapping[str, str]) -> str:
    """The DAG drawing and a table of every stage's status, action and reason."""
    nodes = [DagNode(s.name, s.status, s.last_action or "not run", tuple(s.depends_on), s.seeded_from)
             for s in view.stages]
    rows = [[f'<a href="#stage-{s.index}">{escape(s.name)}</a>', escape(", ".join(s.depends_on) or "-"),
             escape(s.status), escape(s.last_action or "not run"), escape(reasons.get(s.name, "")),
             "-" if s.output_rows is None else f"{s.output_rows:,}",
             "-" if s.duration_seconds is None else f"{s.duration_seconds:.1f}"] for s in view.stages]
    table = table_html(["stage", "parents", "status", "action", "reason", "rows out", "seconds"], rows,
                       numeric=(5, 6))
    return f"<h2>Stages</h2>{dag_svg(nodes)}{table}"


def stage_section(root: Path, stage: StageView, reason: str | None) -> str:
    """What the stage hands on (its selected output): usage, columns, samples."""
    heading = (f'<section class="stage" id="stage-{stage.index}"><h2>Stage {stage.index}: {escape(stage.name)}</h2>'
               f"<p>{escape(stage.status)} · {escape(stage.last_action or 'not run')}"
               + (f" · {escape(reason)}" if reason else "") + "</p>")
    if stage.error:
        heading += f'<p class="bad">{escape(stage.error)}</p>'
    if stage.upstream_stage:
        heading += f"<p class=\"muted\">skipped: upstream stage {escape(stage.upstream_stage)} produced no rows</p>"
    if stage.override_path:
        heading += f"<p class=\"muted\">output replaced by the approved override {escape(stage.override_path)}</p>"
    files = stage_files(root, stage)
    if not files:
        return heading + "<p class=\"muted\">No output to show.</p></section>"
    config = read_config(root / stage.directory)
    return heading + "".join(dataset_sections(files, config, stage.usage)) + "</section>"


def stage_files(root: Path, stage: StageView) -> list[Path]:
    """Parquet files of the stage's selected output: the approved override when one was used."""
    if stage.override_path is None:
        return [_resolve(f.file, root) for f in stage.output_files]
    path = _resolve(stage.override_path, root)
    return [path] if path.is_file() else sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))


def _resolve(stored: str, root: Path) -> Path:
    """Stored paths are relative to the workflow directory when inside it."""
    path = Path(stored)
    return path if path.is_absolute() else root / path
