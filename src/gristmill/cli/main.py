"""``gristmill`` command: create, preview and validate datasets (and more, mounted from siblings)."""

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
from gristmill.cli import cache, models, report, workflow
from gristmill.cli import convert as convert_cli
from gristmill.cli.errors import DebugOption, OnFailedRowsOption, RetryFailedOption, user_errors

# Heavy modules (pandas, pyarrow, the engine) load inside the commands, through ``gm.<name>``
# on first use, so ``gristmill --help`` stays fast.
app = typer.Typer(help="gristmill: synthetic datasets from configs, with resumable workflows.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
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
    debug: DebugOption = False,
) -> None:
    """Generate a dataset into ARTIFACT_PATH/NAME, with a progress bar; a rerun continues it."""
    cfg = load_config(config)
    options = {"batch_size": batch_size, "seed": seed, "executor": executor, "ray_address": ray_address,
               "on_failed_rows": on_failed_rows}
    updates: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    mill = gm.Mill(artifact_path, run_config=run_config(**updates))
    with mill:
        results = mill.create(cfg, num_records=num_records, dataset_name=name or config.stem, resume=resume,
                              verify=verify, retry_failed=retry_failed)
        meta = results.metadata
        console.print(f"[green]done[/]: {meta.actual_rows} rows in {len(meta.completed_batches)} batch files at "
                      f"[bold]{results.artifact_path}[/]; generated now: {results.generated_rows} rows "
                      f"({meta.generation_seconds:.2f}s of generation in all runs)")
        print_usage(results.run_usage, label="this run")


def print_usage(usage: dict[str, dict[str, int]], *, label: str) -> None:
    """One line per model: requests, retries, 429s, tokens, cache hits."""
    for model, counters in sorted(usage.items()):
        parts = ", ".join(f"{k}={v}" for k, v in sorted(counters.items()))
        console.print(f"  model [bold]{escape(model)}[/] ({label}): {parts}", highlight=False)


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
    debug: DebugOption = False,
) -> None:
    """Generate a few rows in memory and print them; nothing is written."""
    cfg = load_config(config)
    with gm.Mill(run_config=run_config(seed=seed, show_progress=False)) as mill:
        show_frame(mill.preview(cfg, num_records=num_records), title=f"preview of {config.name}")


@app.command()
@user_errors
def validate(
    config: Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON).")],
    debug: DebugOption = False,
) -> None:
    """Static checks only: fields, column graph, seed readable, model aliases known."""
    cfg = load_config(config)
    with gm.Mill() as mill:
        mill.validate(cfg)
    console.print(f"[green]valid[/]: {len(cfg.columns)} columns, fingerprint {cfg.fingerprint()[:12]}")


@app.command()
@user_errors
def schema(debug: DebugOption = False) -> None:
    """Print the JSON schema of a dataset config (every registered column type), for editors:
    gristmill schema > dataset.schema.json"""
    typer.echo(json.dumps(gm.dataset_config_json_schema(), indent=2))


app.add_typer(models.app, name="models", help="List and check configured models.")
app.add_typer(cache.app, name="cache", help="Inspect or clear a response cache.")
workflow.register(app)
report.register(app)
convert_cli.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
