"""``gristmill show | head | export DIR``, and what ``gristmill status`` says of a dataset.

    gristmill show DIR [-n ROWS] [--stage STAGE]      the first rows, one block per row
    gristmill show DIR --record N [--stage STAGE]     record N as a panel, nothing cut, with its problems
    gristmill head DIR [-n ROWS] [--stage STAGE]      the same
    gristmill export DIR OUT.jsonl|csv|parquet [--stage STAGE]

DIR is a dataset directory (``<artifact_path>/<name>``) or a workflow directory, whose final
stage's selected output is meant unless ``--stage`` names another. Thin commands over
``gm.DatasetResults`` and ``gm.WorkflowResults``; ``register(app)`` mounts them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

import gristmill as gm
from gristmill.cli.errors import DebugOption, user_errors
from gristmill.errors import ArtifactError, ConfigError, WorkflowError

if TYPE_CHECKING:  # loaded by the commands that use them, so `gristmill --help` stays fast
    import pandas as pd

    from gristmill.workflow import WorkflowResults

console = Console()
METADATA_FILE = "metadata.json"
ERRORS_COLUMN, FAILED_COLUMN = "__errors", "__failed"  # the engine's per-row problem columns (docs/quality-gates.md)

DirArg = Annotated[Path, typer.Argument(help="A dataset directory or a workflow directory.")]
StageOption = Annotated[str | None, typer.Option(
    "--stage", help="Workflow directories: this stage's output (default: the last stage that has one).")]
RowsOption = Annotated[int, typer.Option("--num-rows", "-n", min=1, help="Rows to show.")]
RecordOption = Annotated[int | None, typer.Option(
    "--record", "-r", min=0, help="Show record N (from 0) alone, as a panel: every field in full, and the "
    "row's failed or skipped cells.")]


def is_dataset_dir(directory: Path) -> bool:
    """True when ``directory`` holds a dataset's ``metadata.json``."""
    return (directory / METADATA_FILE).is_file()


def dataset_status(directory: Path, *, as_json: bool) -> None:
    """Print a dataset's state: complete, failed (with the error), or interrupted (with what a
    rerun of ``create`` continues from)."""
    results = gm.DatasetResults(directory)
    meta = results.metadata
    state = _dataset_state(meta)
    if as_json:
        typer.echo(json.dumps({"state": state, **meta.model_dump(mode="json")}, indent=2))
        return
    planned = len(meta.planned_batches) or len(meta.completed_batches)
    table = Table(title=f"dataset {meta.dataset_name!r} ({directory})", show_header=False)
    table.add_column(style="cyan")
    table.add_column(overflow="fold")
    table.add_row("status", state)
    table.add_row("rows", f"{meta.actual_rows} of {meta.target_rows}")
    table.add_row("batches", f"{len(meta.completed_batches)} of {planned} committed")
    failed = sum(b.failed_rows for b in meta.completed_batches)
    if failed:
        table.add_row("failed rows", f"{failed} (gristmill create ... --retry-failed regenerates them)")
    table.add_row("updated", meta.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))
    table.add_row("generation", f"{meta.generation_seconds:.1f}s in all runs")
    costs = results.cost_by_model
    for model, counters in sorted(meta.usage.items()):
        cost = f", cost={costs[model]:.4f}" if model in costs else ""
        table.add_row(f"model {escape(model)}", ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) + cost)
    if results.cost is not None:
        table.add_row("cost", f"{results.cost:.4f} (every run, at the prices of the last)")
    if meta.error:
        table.add_row("error", escape(meta.error))
    console.print(table)


def _dataset_state(meta: Any) -> str:
    """'completed', 'failed' or 'interrupted': a run that stopped without recording an error
    was killed or cut off (Ctrl-C, a crash), or is still running in another process."""
    status = str(meta.status.value)
    if status == "running":
        return "interrupted (or still running elsewhere): rerun create to continue"
    if status == "failed":
        return "failed: fix the error below, then rerun create to continue"
    return status


def show_command(
    directory: DirArg,
    num_rows: RowsOption = 5,
    stage: StageOption = None,
    record: RecordOption = None,
    debug: DebugOption = False,
) -> None:
    """Print the first rows of a dataset (or of a workflow's output), one field/value block per row.

    With --record N, print record N alone, as a panel."""
    if record is not None:
        show_record(directory, stage, record)
        return
    frame, label = _load(directory, stage)
    console.print(f"[bold]{escape(label)}[/]: first {min(num_rows, len(frame))} of {len(frame)} rows",
                  highlight=False)
    for number, (_, row) in enumerate(frame.head(num_rows).iterrows()):
        table = Table(title=f"row {number}", title_justify="left", show_header=False, box=None, padding=(0, 1))
        table.add_column(style="cyan", no_wrap=True)
        table.add_column(overflow="fold")
        for name, value in row.items():
            table.add_row(escape(str(name)), escape(_cell(value)))
        console.print(table)


def show_record(directory: Path, stage: str | None, index: int) -> None:
    """Record ``index`` of a dataset (or of a workflow stage's output) as a rich panel."""
    from gristmill.report import SampleRecord

    if is_dataset_dir(directory):
        if stage is not None:
            raise WorkflowError(f"--stage applies to workflow directories; {directory} is a dataset")
        found = gm.DatasetResults(directory).display_sample_record(index)
        label, total = f"dataset {directory}", gm.DatasetResults(directory).count_records()
    else:
        results, name = _workflow(directory, stage)
        frame = results.load_stage_output(name)
        total, label = len(frame), f"stage {name!r} of {directory}"
        if not 0 <= index < total:
            raise ConfigError(f"record {index} is out of range: {label} has {total} rows (0 to {total - 1})")
        row = {str(k): v for k, v in frame.iloc[index].to_dict().items()}
        problems = row.pop(ERRORS_COLUMN, None)
        row.pop(FAILED_COLUMN, None)
        found = SampleRecord(index, row, [dict(p) for p in problems] if _is_list(problems) else [])
    console.print(record_panel(found, title=f"record {index} of {total}: {label}"))


def record_panel(record: Any, *, title: str) -> Panel:
    """A panel of one record (``SampleRecord``): a field/value grid, then its problems in red."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="cyan", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in record.values.items():
        grid.add_row(Text(name), _renderable(value))
    parts: list[Any] = [grid]
    for problem in record.problems:
        reason = f"{problem.get('column')}: {problem.get('kind')}, {problem.get('reason')}"
        parts.append(Text(f"problem: {reason}", style="red"))
    subtitle = f"{len(record.values)} fields" + (f", {len(record.problems)} problems" if record.problems else "")
    return Panel(Group(*parts), title=escape(title), title_align="left", subtitle=subtitle, subtitle_align="right")


def _renderable(value: Any) -> Any:
    """Text as it is (newlines kept, no markup); structs and lists pretty-printed."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # numpy arrays from pandas rows
    if isinstance(value, dict | list | tuple):
        return Pretty(value, expand_all=False)
    return Text("null" if value is None else str(value))


def _is_list(value: Any) -> bool:
    return value is not None and not isinstance(value, str | float) and len(value) > 0


def _cell(value: Any, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def export_command(
    directory: DirArg,
    output: Annotated[Path, typer.Argument(help="File to write: .jsonl, .csv or .parquet.")],
    stage: StageOption = None,
    debug: DebugOption = False,
) -> None:
    """Write a dataset (or a workflow's output) to one jsonl, csv or parquet file."""
    if is_dataset_dir(directory):
        if stage is not None:
            raise WorkflowError(f"--stage applies to workflow directories; {directory} is a dataset")
        written = gm.DatasetResults(directory).export(output)
        rows = gm.DatasetResults(directory).count_records()
    else:
        results, name = _workflow(directory, stage)
        written = results.export_stage(name, output)
        rows = results.count_stage_records(name)
    typer.echo(f"wrote {rows} rows to {written}")  # plain: a long path must stay on one line


def _load(directory: Path, stage: str | None) -> tuple[pd.DataFrame, str]:
    if is_dataset_dir(directory):
        if stage is not None:
            raise WorkflowError(f"--stage applies to workflow directories; {directory} is a dataset")
        return gm.DatasetResults(directory).load_dataset(), f"dataset {directory}"
    results, name = _workflow(directory, stage)
    return results.load_stage_output(name), f"stage {name!r} of {directory}"


def _workflow(directory: Path, stage: str | None) -> tuple[WorkflowResults, str]:
    """The workflow's results as stored, and the stage meant: ``stage``, else the last one with output."""
    from gristmill.workflow import WORKFLOW_METADATA_FILE, WorkflowResults, load_workflow_metadata

    path = directory / WORKFLOW_METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} holds neither {METADATA_FILE} (a dataset) nor {WORKFLOW_METADATA_FILE} "
                            "(a workflow); pass the directory a create() or workflow run wrote")
    loaded = load_workflow_metadata(path, _workflow_name(path))
    if loaded.metadata is None:
        raise ArtifactError(loaded.problem or f"{path} is unreadable")
    meta = loaded.metadata
    stages = {record.name: gm.DatasetResults(directory / record.directory) for record in meta.stages}
    with_output = [r.name for r in meta.stages if r.output_path is not None or r.override_path is not None]
    if stage is None:
        if not with_output:
            raise WorkflowError(f"no stage of {directory} has output yet; run the workflow first")
        stage = with_output[-1]
    elif stage not in stages:
        raise WorkflowError(f"no stage {stage!r} in {directory}; stages with a record: {', '.join(stages) or 'none'}")
    return WorkflowResults(directory, meta, stages), stage


def _workflow_name(path: Path) -> str:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is corrupt ({exc})") from None
    return str(raw.get("workflow_name")) if isinstance(raw, dict) else ""


def register(app: typer.Typer) -> None:
    """Add ``show``, ``head`` and ``export`` to the top-level ``gristmill`` app."""
    app.command("show")(user_errors(show_command))
    app.command("head", help="Same as show: the first rows of a dataset or of a workflow's output.")(
        user_errors(show_command))
    app.command("export")(user_errors(export_command))
