"""``gristmill run | plan | status``: composite workflows from the shell.

    gristmill run WORKFLOW.yaml [--resume never|if-possible|always] [--target STAGE]...
                                [--rerun-from STAGE] [--override STAGE=PATH]...
    gristmill plan WORKFLOW.yaml [--resume ...] [--json]
    gristmill status DIR [--json]

Thin commands over ``gristmill.workflow``; ``register(app)`` mounts them on the top-level app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import gristmill as gm
from gristmill.errors import ConfigError, WorkflowError
from gristmill.workflow import (
    WORKFLOW_METADATA_FILE,
    StageAction,
    WorkflowMetadata,
    WorkflowPlan,
    load_workflow_metadata,
)

console = Console()

WorkflowArg = Annotated[Path, typer.Argument(help="Workflow file (YAML).")]
TargetOption = Annotated[list[str] | None, typer.Option("--target", help="Materialise up to this stage (repeatable).")]
RerunOption = Annotated[str | None, typer.Option("--rerun-from", help="Force this stage and all later ones to run.")]
OverrideOption = Annotated[list[str] | None, typer.Option(
    "--override", help="STAGE=PATH: use an approved parquet file as the stage's output (repeatable).")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
_ACTION_STYLE = {StageAction.REUSE: "green", StageAction.RESUME: "cyan", StageAction.RUN: "yellow",
                 StageAction.SKIP_EMPTY: "magenta"}


def run_command(
    workflow: WorkflowArg,
    resume: Annotated[str, typer.Option(help="never | if-possible | always")] = "never",
    target: TargetOption = None,
    rerun_from: RerunOption = None,
    override: OverrideOption = None,
    debug: DebugOption = False,
) -> None:
    """Plan and run a workflow file: unchanged stages are reused, changed ones rerun."""
    wf = _load(workflow)
    with wf.mill:
        # The plan printed is the one executed: run() makes it under the workflow lock.
        results = wf.run(resume=resume, targets=target, rerun_from=rerun_from,
                         stage_output_overrides=_overrides(override),
                         on_plan=lambda plan: print_plan(plan, title=f"plan of workflow {wf.name!r}"))
        console.print(f"[green]done[/]: {results.count_records()} rows from stage "
                      f"{results.final_stage!r} in [bold]{results.workflow_dir}[/]")


def plan_command(
    workflow: WorkflowArg,
    resume: Annotated[str, typer.Option(help="never | if-possible | always")] = "if-possible",
    target: TargetOption = None,
    rerun_from: RerunOption = None,
    override: OverrideOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show what ``run`` would do for every stage, and why; nothing is written."""
    wf = _load(workflow)
    with wf.mill:
        plan = wf.plan(resume=resume, targets=target, rerun_from=rerun_from,
                       stage_output_overrides=_overrides(override))
    if as_json:
        typer.echo(json.dumps({"workflow": wf.name, "directory": str(wf.workflow_dir), **plan.to_dict()}, indent=2))
        return
    print_plan(plan, title=f"plan of workflow {wf.name!r} ({wf.workflow_dir})")
    for blocker in plan.always_blockers() if plan.resume == "always" else []:
        console.print(f"[red]resume=always would refuse[/]: {escape(blocker)}")


def status_command(
    directory: Annotated[Path, typer.Argument(help="A workflow directory (holding workflow-metadata.json).")],
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show each stage's status, rows and timings from a workflow directory."""
    meta = _read_status(directory)
    if as_json:
        typer.echo(json.dumps(meta.model_dump(mode="json"), indent=2))
        return
    table = Table(title=f"workflow {meta.workflow_name!r} ({directory})")
    for column in ("stage", "status", "last action", "rows", "finished", "duration"):
        table.add_column(column)
    for record in meta.stages:
        finished = record.finished_at.strftime("%Y-%m-%d %H:%M:%S") if record.finished_at else "-"
        duration = f"{record.duration_seconds:.1f}s" if record.duration_seconds is not None else "-"
        rows = "-" if record.output_rows is None else str(record.output_rows)
        table.add_row(record.name, record.status.value, record.last_action or "-", rows, finished, duration)
    console.print(table)


def print_plan(plan: WorkflowPlan, *, title: str) -> None:
    """The plan as a table: stage, action, reason, rows, last run."""
    table = Table(title=title)
    for column in ("stage", "action", "reason", "rows", "last run"):
        table.add_column(column, overflow="fold")
    for step in plan.stages:
        style = _ACTION_STYLE[step.action]
        last = step.last_run.strftime("%Y-%m-%d %H:%M:%S") if step.last_run else "-"
        rows = "-" if step.num_records is None else str(step.num_records)
        table.add_row(step.name, f"[{style}]{step.action.value.upper()}[/]", escape(step.reason), rows, last)
    for name in plan.not_targeted:
        table.add_row(name, "-", "not targeted", "-", "-")
    console.print(table)


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"workflow file {str(path)!r} does not exist")
    base = str(path.resolve().parent)
    if base not in sys.path:  # callbacks and custom columns may live next to the workflow file
        sys.path.insert(0, base)
    return gm.load_workflow(path)


def _overrides(items: list[str] | None) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in items or []:
        stage, sep, path = item.partition("=")
        if not sep or not stage or not path:
            raise WorkflowError(f"--override {item!r} must look like STAGE=PATH")
        overrides[stage] = path
    return overrides


def _read_status(directory: Path) -> WorkflowMetadata:
    path = directory / WORKFLOW_METADATA_FILE
    if not path.is_file():
        raise WorkflowError(f"{directory} holds no {WORKFLOW_METADATA_FILE}; pass a workflow directory "
                            "(<artifact_path>/<workflow name>)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkflowError(f"{path} is corrupt ({exc})") from None
    name = raw.get("workflow_name") if isinstance(raw, dict) else None
    loaded = load_workflow_metadata(path, str(name))
    if loaded.metadata is None:
        raise WorkflowError(loaded.problem or f"{path} is unreadable")
    return loaded.metadata


def register(app: typer.Typer) -> None:
    """Add ``run``, ``plan`` and ``status`` to the top-level ``gristmill`` app."""
    from gristmill.cli.main import user_errors  # imported here: main imports this module while loading

    app.command("run")(user_errors(run_command))
    app.command("plan")(user_errors(plan_command))
    app.command("status")(user_errors(status_command))
