"""``gristmill`` command: create, preview and validate datasets (and more, mounted from siblings)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import gristmill as gm
from gristmill.cli import cache, models, report, workflow
from gristmill.cli import convert as convert_cli
from gristmill.cli import init as init_cli
from gristmill.cli import inspect as inspect_cli
from gristmill.cli.errors import (
    DebugOption,
    ModelsOption,
    OnFailedRowsOption,
    ProvidersOption,
    RetryFailedOption,
    ToolsOption,
    err_console,
    model_file,
    user_errors,
)

# Heavy modules (pandas, pyarrow, the engine) load inside the commands, through ``gm.<name>``
# on first use, so ``gristmill --help`` stays fast.
app = typer.Typer(help="gristmill: synthetic datasets from configs, with resumable workflows.",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)
console = Console()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gristmill {gm.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    """gristmill: synthetic datasets from configs, with resumable workflows."""


def load_config(path: Path) -> gm.DatasetConfig:
    """A dataset config from a YAML or JSON file; relative seed paths resolve from the file's folder."""
    if not path.exists():
        raise gm.ConfigError(f"config file {str(path)!r} does not exist")
    config = gm.DatasetConfig.from_json(path) if path.suffix.lower() == ".json" else gm.DatasetConfig.from_yaml(path)
    if str(path.parent.resolve()) not in sys.path:  # custom columns may live next to the config
        sys.path.insert(0, str(path.parent.resolve()))
    gm.allow_directory(path.parent)  # and are the user's code, unlike a string in the config (docs/trust.md)
    return config


def show_frame(frame: Any, *, title: str | None = None, max_width: int = 40) -> None:
    """Print a DataFrame readably: a table when it is narrow, else one field/value block per row."""
    if len(frame.columns) > 5:
        show_records(frame, title=title)
        return
    table = Table(title=title, show_lines=False)
    for name in frame.columns:
        table.add_column(str(name), overflow="fold", max_width=max_width)
    for _, row in frame.iterrows():
        table.add_row(*[_cell(v, max_width * 3) for v in row.tolist()])
    console.print(table)


def show_records(frame: Any, *, title: str | None = None, limit: int = 300) -> None:
    """Print each row as a two-column block (column, value): wide rows stay readable."""
    if title:
        console.print(f"[bold]{escape(title)}[/]")
    for number, (_, row) in enumerate(frame.iterrows()):
        table = Table(title=f"row {number}", title_justify="left", show_header=False, box=None, padding=(0, 1))
        table.add_column(style="cyan", no_wrap=True)
        table.add_column(overflow="fold")
        for name, value in row.items():
            table.add_row(str(name), escape(_cell(value, limit)))
        console.print(table)


def _cell(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command()
@user_errors
def create(
    config: Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON).")],
    num_records: Annotated[int, typer.Option("--num-records", "-n", help="Rows to generate.")],
    name: Annotated[str | None, typer.Option("--name", help="Dataset name (default: the config's file stem).")] = None,
    resume: Annotated[str, typer.Option(help="never | if-possible | always")] = "if-possible",
    artifact_path: Annotated[Path, typer.Option("--artifact-path", help="Where datasets are written.")] = Path(
        "artifacts"),
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed (recorded; derived from the name when omitted).")] = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Also compare the sha256 of every stored file (the CRC-32 is always checked).")] = False,
    executor: Annotated[str | None, typer.Option(
        help="local | ray: where batches are built (ray needs gristmill[ray]).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local one).")] = None,
    retry_failed: RetryFailedOption = False,
    on_failed_rows: OnFailedRowsOption = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the bill (model requests to pay, from cache, cost) and exit; writes nothing.",
    )] = False,
    target_valid_records: Annotated[int | None, typer.Option(
        "--target-valid-records", help="Keep generating until this many rows pass (docs/quality-gates.md).")] = None,
    max_records: Annotated[int | None, typer.Option(
        "--max-records", help="With --target-valid-records: the most rows to generate.")] = None,
    valid_filter: Annotated[str | None, typer.Option(
        "--valid-filter", help="With --target-valid-records: the Jinja condition a valid row satisfies.")] = None,
    providers: ProvidersOption = None,
    models: ModelsOption = None,
    tools: ToolsOption = None,
    debug: DebugOption = False,
) -> None:
    """Generate a dataset into ARTIFACT_PATH/NAME, with a progress bar; a rerun continues it."""
    cfg = load_config(config)
    options = {"batch_size": batch_size, "seed": seed, "executor": executor, "ray_address": ray_address,
               "on_failed_rows": on_failed_rows}
    updates: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    mill = gm.Mill(artifact_path, run_config=run_config(**updates), model_providers=model_file(providers),
                   model_configs=model_file(models), tool_providers=model_file(tools), tool_configs=model_file(tools))
    with mill:
        if dry_run:
            print_bill(mill.bill_dataset(cfg, num_records=num_records, dataset_name=name or config.stem,
                                         resume=resume, target_valid_records=target_valid_records,
                                         max_records=max_records, valid_filter=valid_filter))
            return
        results = mill.create(cfg, num_records=num_records, dataset_name=name or config.stem, resume=resume,
                              verify=verify, retry_failed=retry_failed, target_valid_records=target_valid_records,
                              max_records=max_records, valid_filter=valid_filter)
        meta = results.metadata
        batches = len(meta.completed_batches)
        files = f"{batches} batch file{'' if batches == 1 else 's'}"
        console.print(f"[green]done[/]: {meta.actual_rows} rows in {files} at "
                      f"[bold]{results.artifact_path}[/]; generated now: {results.generated_rows} rows "
                      f"({meta.generation_seconds:.2f}s of generation in all runs)")
        print_usage(results.run_usage, label="this run", prices=results.metadata.prices)


def print_usage(usage: dict[str, dict[str, int]], *, label: str, prices: Mapping[str, Any] | None = None) -> None:
    """One line per model: requests, retries, 429s, tokens, cache hits, and the cost when the model
    has a price (``prices``: alias -> ``ModelPrice``)."""
    for model, counters in sorted(usage.items()):
        parts = ", ".join(f"{k}={v}" for k, v in sorted(counters.items()))
        price = (prices or {}).get(model)
        cost = f", cost={price.cost(counters):.4f}" if price is not None else ""
        console.print(f"  model [bold]{escape(model)}[/] ({label}): {parts}{cost}", highlight=False)


def print_bill(bill: Any) -> None:
    """The bill of a dataset run (``Mill.bill_dataset``): what it does, then one line per LLM column."""
    console.print(f"dry run: {bill.action} ({escape(bill.reason)}), {bill.rows} rows to build; nothing written",
                  highlight=False)
    for line in bill.format_lines():
        console.print(f"  {escape(line)}", highlight=False)
    total = f"total: {bill.requests} model requests to pay, {bill.cached} from cache, at most {bill.upper_bound}"
    console.print(total + (f", estimated cost ~{bill.cost:.4f}" if bill.cost is not None else ""), highlight=False)
    if bill.note:
        console.print(f"  note: {escape(bill.note)}", highlight=False)


def run_config(**options: Any) -> gm.RunConfig:
    """A RunConfig from command-line options; a bad value is a ConfigError naming the option."""
    from pydantic import ValidationError

    try:
        return gm.RunConfig(**options)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise gm.ConfigError(f"{option}: {first['msg']}") from None


@app.command()
@user_errors
def preview(
    config: Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON).")],
    num_records: Annotated[int, typer.Option("--num-records", "-n", help="Rows to show.")] = 5,
    seed: Annotated[int | None, typer.Option(help="Run seed.")] = None,
    providers: ProvidersOption = None,
    models: ModelsOption = None,
    tools: ToolsOption = None,
    debug: DebugOption = False,
) -> None:
    """Generate a few rows in memory and print them; nothing is written."""
    cfg = load_config(config)
    try:
        with gm.Mill(run_config=run_config(seed=seed, show_progress=False), model_providers=model_file(providers),
                     model_configs=model_file(models), tool_providers=model_file(tools),
                     tool_configs=model_file(tools)) as mill:
            show_frame(mill.preview(cfg, num_records=num_records), title=f"preview of {config.name}")
    except KeyboardInterrupt:  # a preview writes nothing, so there is nothing to resume
        err_console.print("[yellow]interrupted[/]: a preview writes nothing; run it again when ready")
        raise typer.Exit(130) from None


@app.command()
@user_errors
def validate(
    config: Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON), or a workflow file.")],
    debug: DebugOption = False,
) -> None:
    """Check a dataset config or a workflow file without generating anything.

    A dataset config: fields, column graph, struct fields read by templates, seed readable, model aliases known.

    A workflow file: the checks `gristmill run` makes before any stage starts."""
    if _is_workflow_file(config):
        _validate_workflow(config)
        return
    cfg = load_config(config)
    with gm.Mill() as mill:
        mill.validate(cfg)
    console.print(f"[green]valid[/]: {len(cfg.columns)} columns, fingerprint {cfg.fingerprint()[:12]}")


def _is_workflow_file(path: Path) -> bool:
    """A YAML mapping with ``stages``: what ``gristmill run`` takes, not a dataset config."""
    import yaml  # here, not at the top: ``gristmill --help`` stays fast

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # reported by the dataset config loader, which names the file
    return isinstance(data, dict) and "stages" in data


def _validate_workflow(path: Path) -> None:
    """Every stage checked as ``run`` checks it before work starts (as if all of them ran)."""
    console.print(f"{escape(str(path))} is a workflow file (it has 'stages'): checking every stage", highlight=False)
    base = str(path.resolve().parent)  # callbacks and custom columns may live beside it
    if base not in sys.path:
        sys.path.insert(0, base)
    gm.allow_directory(base)
    with gm.load_workflow(path) as wf:
        wf.plan(resume="never")
    console.print(f"[green]valid[/]: workflow {escape(repr(wf.name))}, {len(wf.stages)} stages")


@app.command()
@user_errors
def schema(debug: DebugOption = False) -> None:
    """Print the JSON schema of a dataset config (every registered column type), for editors.

    Example: gristmill schema > dataset.schema.json"""
    typer.echo(json.dumps(gm.dataset_config_json_schema(), indent=2))


app.add_typer(models.app, name="models", help="List and check configured models.")
app.add_typer(cache.app, name="cache", help="Inspect or clear a response cache.")
workflow.register(app)
report.register(app)
convert_cli.register(app)
inspect_cli.register(app)
init_cli.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
