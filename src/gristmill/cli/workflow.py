"""``gristmill run | plan | status``: composite workflows from the shell.

    gristmill run WORKFLOW.yaml [--resume never|if-possible|always] [--target STAGE]...
                                [--rerun-from STAGE] [--override STAGE=PATH]...
    gristmill plan WORKFLOW.yaml [--resume ...] [--target STAGE]... [--rerun-from STAGE] [--json | --graph]
    gristmill plan CONFIG.yaml -n ROWS [--name NAME] [--artifact-path DIR] [--resume ...] [--json]
    gristmill status DIR [--json]

Thin commands over ``gristmill.workflow``; ``register(app)`` mounts them on the top-level app.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import gristmill as gm
from gristmill.cli.errors import (
    DebugOption,
    ModelsOption,
    OnFailedRowsOption,
    ProvidersOption,
    RetryFailedOption,
    ToolsOption,
    model_file,
    user_errors,
)
from gristmill.errors import ConfigError, WorkflowError

if TYPE_CHECKING:  # loaded by the commands that use them, so `gristmill --help` stays fast
    from gristmill.workflow import CompositeWorkflow, WorkflowMetadata, WorkflowPlan

console = Console()

WorkflowArg = Annotated[Path, typer.Argument(help="Workflow file (YAML).")]
TargetOption = Annotated[list[str] | None, typer.Option("--target", help="Materialise up to this stage (repeatable).")]
RerunOption = Annotated[str | None, typer.Option("--rerun-from", help="Force this stage and all later ones to run.")]
OverrideOption = Annotated[list[str] | None, typer.Option(
    "--override", help="STAGE=PATH: use an approved parquet file as the stage's output (repeatable).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
VerifyOption = Annotated[bool, typer.Option(
    "--verify", help="Also compare the sha256 of every stored file (the CRC-32 is always checked).")]
_ACTION_STYLE = {"reuse": "green", "resume": "cyan", "run": "yellow", "skip_empty": "magenta"}


def run_command(
    workflow: WorkflowArg,
    resume: Annotated[str, typer.Option(help="never | if-possible | always")] = "if-possible",
    target: TargetOption = None,
    rerun_from: RerunOption = None,
    override: OverrideOption = None,
    verify: VerifyOption = False,
    executor: Annotated[str | None, typer.Option(
        help="local | ray: where batches are built (ray needs gristmill[ray]).")] = None,
    retry_failed: RetryFailedOption = False,
    on_failed_rows: OnFailedRowsOption = None,
    providers: ProvidersOption = None,
    models: ModelsOption = None,
    tools: ToolsOption = None,
    debug: DebugOption = False,
) -> None:
    """Plan and run a workflow file: unchanged stages are reused, changed ones rerun."""
    wf = _load(workflow, executor=executor, on_failed_rows=on_failed_rows, providers=providers, models=models,
               tools=tools)
    with wf:
        # The plan printed is the one executed: run() makes it under the workflow lock.
        results = wf.run(resume=resume, targets=target, rerun_from=rerun_from,
                         stage_output_overrides=_overrides(override), verify=verify, retry_failed=retry_failed,
                         on_plan=lambda plan: print_plan(plan, title=f"plan of workflow {wf.name!r}"))
        console.print(f"[green]done[/]: {results.count_records()} rows from stage "
                      f"{results.final_stage!r} in [bold]{results.workflow_dir}[/]")


def plan_command(
    file: Annotated[Path, typer.Argument(help="Workflow file, or a dataset config (YAML/JSON with 'columns').")],
    resume: Annotated[str, typer.Option(help="never | if-possible | always")] = "if-possible",
    target: TargetOption = None,
    rerun_from: RerunOption = None,
    override: OverrideOption = None,
    num_records: Annotated[int | None, typer.Option(
        "--num-records", "-n", help="Rows to create (dataset config only, required there).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Dataset name (dataset config only; default: the config's file stem).")] = None,
    artifact_path: Annotated[Path, typer.Option(
        "--artifact-path", help="Where datasets are written (dataset config only).")] = Path("artifacts"),
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch file (dataset config only).")] = None,
    as_json: JsonOption = False,
    graph: Annotated[bool, typer.Option(
        "--graph", help="Print the workflow's stage graph as Mermaid text (graph TD) instead of the plan.")] = False,
    verify: VerifyOption = False,
    providers: ProvidersOption = None,
    models: ModelsOption = None,
    tools: ToolsOption = None,
    debug: DebugOption = False,
) -> None:
    """Show what `run` (or `create`, for a dataset config) would do, and why; nothing is written."""
    if _is_dataset_config(file):
        if target or rerun_from or override:
            raise WorkflowError("--target, --rerun-from and --override apply to workflow files, not to a "
                                f"dataset config ({file})")
        request = DatasetPlanRequest(num_records, name or file.stem, artifact_path, batch_size, resume,
                                     model_file(providers), model_file(models), model_file(tools))
        _plan_dataset(file, request, as_json=as_json)
        return
    wf = _load(file, providers=providers, models=models, tools=tools)
    if graph:
        with wf:
            typer.echo(mermaid_graph(wf))
        return
    with wf:
        plan = wf.plan(resume=resume, targets=target, rerun_from=rerun_from,
                       stage_output_overrides=_overrides(override), verify=verify)
        bill = wf.bill(plan, stage_output_overrides=_overrides(override))
    if as_json:
        typer.echo(json.dumps({"workflow": wf.name, "directory": str(wf.workflow_dir), **plan.to_dict(),
                               "bill": bill.to_dict()}, indent=2))
        return
    print_plan(plan, title=f"plan of workflow {wf.name!r} ({wf.workflow_dir})")
    lines = bill.format_lines()
    console.print("bill (model requests):" if lines else "bill: no model requests to send")
    for line in lines:
        console.print(f"  {escape(line)}", highlight=False)
    for blocker in plan.always_blockers() if plan.resume == "always" else []:
        console.print(f"[red]resume=always would refuse[/]: {escape(blocker)}")


@dataclass(frozen=True)
class DatasetPlanRequest:
    """What ``gristmill plan CONFIG`` asks: the arguments ``gristmill create`` would get."""

    num_records: int | None
    dataset_name: str
    artifact_path: Path
    batch_size: int | None
    resume: str
    providers: Path | None = None
    models: Path | None = None
    tools: Path | None = None


def _plan_dataset(path: Path, request: DatasetPlanRequest, *, as_json: bool) -> None:
    """Print ``Mill.plan_dataset``'s decision for a dataset config file."""
    if request.num_records is None:
        raise ConfigError(f"{path} is a dataset config: give --num-records/-n, the rows create would make")
    # Loaded as ``gristmill create`` loads it (cli.main imports this module, so not its helper).
    config = gm.DatasetConfig.from_json(path) if path.suffix.lower() == ".json" else gm.DatasetConfig.from_yaml(path)
    _importable_next_to(path)
    with gm.Mill(request.artifact_path, run_config=_run_config(request.batch_size), model_providers=request.providers,
                 model_configs=request.models, tool_providers=request.tools, tool_configs=request.tools) as mill:
        decision = mill.plan_dataset(config, num_records=request.num_records, dataset_name=request.dataset_name,
                                     resume=request.resume)
    if as_json:
        typer.echo(json.dumps({"dataset": request.dataset_name, "action": decision.action.value,
                               "path": str(decision.path), "reason": decision.reason, "warning": decision.warning,
                               "batches_missing": decision.batches_missing}, indent=2))
        return
    console.print(f"plan of dataset {escape(repr(request.dataset_name))} ({escape(str(decision.path))})")
    console.print(f"  [bold]{decision.action.value.upper()}[/]  {escape(decision.reason)}"
                  + (f" ({decision.batches_missing} batches to build)" if decision.batches_missing else ""))
    if decision.warning:
        console.print(f"[yellow]warning[/]: {escape(decision.warning)}")


def _run_config(batch_size: int | None) -> gm.RunConfig:
    """``RunConfig`` with the batch size given on the command line; a bad one names the option."""
    from pydantic import ValidationError

    try:
        return gm.RunConfig() if batch_size is None else gm.RunConfig(batch_size=batch_size)
    except ValidationError as exc:
        raise ConfigError(f"--batch-size: {exc.errors(include_url=False)[0]['msg']}") from None


def _is_dataset_config(path: Path) -> bool:
    """True for a mapping with ``columns`` and no ``stages`` (a workflow file has ``stages``)."""
    import yaml  # here, not at the top: ``gristmill --help`` stays fast

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # reported by the workflow loader, which names the file
    return isinstance(data, dict) and "columns" in data and "stages" not in data


def status_command(
    path: Annotated[Path, typer.Argument(help=(
        "A dataset directory, a workflow directory, or a workflow file (then its stages not run yet are listed)."))],
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show where a dataset or a workflow got to: complete, failed or interrupted, rows, timings."""
    from gristmill.cli.inspect import dataset_status, is_dataset_dir

    if path.is_dir() and is_dataset_dir(path):
        dataset_status(path, as_json=as_json)
        return
    stage_names: list[str] = []
    directory = path
    if path.is_file():  # a workflow file: its directory, and every stage it defines
        from gristmill.workflow import WORKFLOW_METADATA_FILE

        with _load(path) as wf:
            directory, stage_names = wf.workflow_dir, [stage.name for stage in wf.stages]
        if not (directory / WORKFLOW_METADATA_FILE).is_file():
            console.print(f"workflow {wf.name!r} has not run yet ({escape(str(directory))}): stages "
                          f"{', '.join(stage_names)}", highlight=False)
            return
    meta = _read_status(directory)
    if as_json:
        typer.echo(json.dumps(meta.model_dump(mode="json"), indent=2))
        return
    costs = {record.name: _stage_cost(directory / record.directory) for record in meta.stages}
    priced = any(cost is not None for cost in costs.values())
    table = Table(title=f"workflow {meta.workflow_name!r} ({directory})")
    for column in ("stage", "status", "last action", "why", "rows", "finished", "duration",
                   *(["cost"] if priced else [])):
        table.add_column(column)
    recorded = set()
    for record in meta.stages:
        recorded.add(record.name)
        finished = record.finished_at.strftime("%Y-%m-%d %H:%M:%S") if record.finished_at else "-"
        duration = f"{record.duration_seconds:.1f}s" if record.duration_seconds is not None else "-"
        rows = "-" if record.output_rows is None else str(record.output_rows)
        cost = costs[record.name]
        table.add_row(record.name, _stage_state(record.status.value), record.last_action or "-",
                      record.last_reason or "-", rows, finished, duration,
                      *([f"{cost:.4f}" if cost is not None else "-"] if priced else []))
    for name in stage_names:
        if name not in recorded:
            table.add_row(name, "not run yet", "-", "-", "-", "-", "-", *(["-"] if priced else []))
    console.print(table)
    if priced:
        total = sum(cost for cost in costs.values() if cost is not None)
        console.print(f"cost: {total:.4f} over every stage's runs, at the prices of each stage's last run",
                      highlight=False)


def _stage_cost(stage_dir: Path) -> float | None:
    """Cost of a stage's dataset (None without priced models, or without a readable dataset)."""
    if not (stage_dir / "metadata.json").is_file():
        return None
    try:
        return gm.DatasetResults(stage_dir).cost
    except gm.GristmillError:
        return None


def _stage_state(status: str) -> str:
    """A stage cut off without a recorded error (Ctrl-C, a crash) is interrupted, not failed."""
    return "interrupted (or still running)" if status == "running" else status


def print_plan(plan: WorkflowPlan, *, title: str) -> None:
    """The plan as a table: stage, its parents, action, reason, rows, last run."""
    table = Table(title=title)
    for column in ("stage", "parents", "action", "reason", "rows", "last run"):
        table.add_column(column, overflow="fold")
    for step in plan.stages:
        style = _ACTION_STYLE[step.action]
        last = step.last_run.strftime("%Y-%m-%d %H:%M:%S") if step.last_run else "-"
        rows = "-" if step.num_records is None else str(step.num_records)
        table.add_row(step.name, escape(", ".join(step.parents)) or "-", f"[{style}]{step.action.value.upper()}[/]",
                      escape(step.reason), rows, last)
    for name in plan.not_targeted:
        table.add_row(name, "", "-", "not targeted", "-", "-")
    console.print(table)


def mermaid_graph(wf: CompositeWorkflow) -> str:
    """The stage DAG as Mermaid text: ``seed --> child``, joins labelled with their key, side
    inputs dotted. Reads nothing from disk."""
    lines = ["graph TD"]
    for stage in wf.stages:
        if not stage.parents:
            lines.append(f"    {stage.name}")
        for parent in stage.parents:
            if parent in stage.options.side_inputs:
                lines.append(f"    {parent} -. side input .-> {stage.name}")
            elif parent in stage.options.join:
                lines.append(f"    {parent} -- join on {stage.options.join[parent]} --> {stage.name}")
            else:
                lines.append(f"    {parent} --> {stage.name}")
    return "\n".join(lines)


def _load(path: Path, *, executor: str | None = None, on_failed_rows: str | None = None,
          providers: Path | None = None, models: Path | None = None, tools: Path | None = None) -> CompositeWorkflow:
    if not path.is_file():
        raise ConfigError(f"workflow file {str(path)!r} does not exist")
    _importable_next_to(path)
    options = {k: v for k, v in {"executor": executor, "on_failed_rows": on_failed_rows}.items() if v}
    return gm.load_workflow(path, run_options=options or None, model_providers=model_file(providers),
                            model_configs=model_file(models), tools=model_file(tools))


def _importable_next_to(path: Path) -> None:
    """Put the file's directory first on ``sys.path``: callbacks and custom columns may live there."""
    base = str(path.resolve().parent)
    if base not in sys.path:
        sys.path.insert(0, base)
    gm.allow_directory(base)  # a .py file beside the workflow file is the user's code (docs/trust.md)


def _overrides(items: list[str] | None) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in items or []:
        stage, sep, path = item.partition("=")
        if not sep or not stage or not path:
            raise WorkflowError(f"--override {item!r} must look like STAGE=PATH")
        overrides[stage] = path
    return overrides


def _read_status(directory: Path) -> WorkflowMetadata:
    from gristmill.workflow import WORKFLOW_METADATA_FILE, load_workflow_metadata

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


def clean_command(
    directory: Annotated[Path, typer.Argument(help="Workflow directory, or a dataset directory.")],
    yes: Annotated[bool, typer.Option("--yes", help="Delete; without it, only list what would go.")] = False,
    debug: DebugOption = False,
) -> None:
    """Empty a workflow's trash, or remove a dataset's leftover fresh starts; lists first, deletes with --yes.

    A workflow's trash holds what its reruns moved aside.

    Fresh starts are the <name>_<timestamp> folders beside a dataset; their cached answers are merged in first."""
    from gristmill.workflow import empty_trash, leftover_runs, remove_leftover_runs, trash_entries

    dataset = (directory / "metadata.json").is_file()
    if dataset:
        entries = remove_leftover_runs(directory) if yes else leftover_runs(directory)
    else:
        entries = empty_trash(directory) if yes else trash_entries(directory)
    for entry in entries:
        console.print(f"{'deleted' if yes else 'would delete'} {escape(str(entry.path))} "
                      f"({entry.num_bytes:,} bytes)", soft_wrap=True)
    total = sum(entry.num_bytes for entry in entries)
    verb = "deleted" if yes else "nothing deleted yet; pass --yes to delete"
    if dataset and entries:
        verb += " (their cached answers are merged into this dataset's response cache first)" if not yes else (
            "; their cached answers were merged into this dataset's response cache")
    empty = f"no leftover fresh starts beside {directory}" if dataset else "the trash is empty"
    console.print(f"{len(entries)} item(s), {total:,} bytes: {verb}" if entries else empty, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``run``, ``plan``, ``status`` and ``clean`` to the top-level ``gristmill`` app."""
    app.command("run")(user_errors(run_command))
    app.command("plan")(user_errors(plan_command))
    app.command("status")(user_errors(status_command))
    app.command("clean")(user_errors(clean_command))
