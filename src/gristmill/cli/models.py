"""``gristmill models list | check``: the configured models, and whether each one answers.

    gristmill models list [--providers FILE] [--models FILE]
    gristmill models check [ALIAS]... [--providers FILE] [--models FILE]

Files default to ``providers.yaml`` / ``models.yaml`` in ``$GRISTMILL_HOME`` (``~/.gristmill``).
Thin commands over ``gristmill.llm.describe_models`` and ``check_models``, loaded when a
command runs (they import the LLM runtime).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gristmill.cli.errors import print_error
from gristmill.errors import GristmillError

if TYPE_CHECKING:
    from gristmill.llm import ModelSummary

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()

ProvidersOption = Annotated[Path | None, typer.Option("--providers", help="providers.yaml to use.")]
ModelsOption = Annotated[Path | None, typer.Option("--models", help="models.yaml to use.")]


@app.command("list")
def list_models(providers: ProvidersOption = None, models: ModelsOption = None) -> None:
    """Show every model alias with its provider, endpoint and parameters (never the API key)."""
    from gristmill.llm import describe_models, gristmill_home

    try:
        summaries = describe_models(providers=providers, models=models)
    except GristmillError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    table = Table("alias", "provider", "model", "endpoint", "parameters", "max parallel")
    for model in summaries:
        if model.error is not None:  # e.g. a model naming an unknown provider: show it, go on
            table.add_row(escape(model.alias), escape(model.provider), escape(model.model),
                          f"[red]error: {escape(model.error)}[/]", "-", "-")
            continue
        parameters = ", ".join(f"{k}={v}" for k, v in model.parameters.items()) or "-"
        table.add_row(escape(model.alias), escape(model.provider), escape(model.model), escape(model.endpoint),
                      escape(parameters), str(model.max_parallel_requests))
    console.print(table)
    console.print(f"[dim]{escape(sources_line(gristmill_home(), providers, models, summaries))}[/]", highlight=False)


def sources_line(home: Path, providers: Path | None, models: Path | None, summaries: Sequence[ModelSummary]) -> str:
    """Which files the list came from: the paths given, else providers.yaml / models.yaml in the
    home folder when they exist; and that alias 'default' is the embedded model when it is."""
    read, missing = [], []
    for given, name in ((providers, "providers.yaml"), (models, "models.yaml")):
        if given is not None:
            read.append(str(given))
        elif (home / name).is_file():
            read.append(str(home / name))
        else:
            missing.append(name)
    absent = " or ".join(missing)
    if not read:
        line = (f"{home} does not exist: no {absent} read" if not home.exists() else f"no {absent} in {home}")
    else:
        line = "read " + " and ".join(read)
        if missing:
            line += f"; no {absent} in {home}" + ("" if home.exists() else " (it does not exist)")
    embedded = next((m for m in summaries if m.alias == "default" and m.error is None and m.provider == "local"
                     and m.endpoint == "(local)"), None)
    if embedded is not None:
        line += (f"; alias 'default' is the embedded local model {embedded.model}, a tiny model for trying "
                 "gristmill out (add providers.yaml and models.yaml, or pass --providers and --models, to use yours)")
    return line


@app.command("check")
def check_models(aliases: Annotated[list[str] | None, typer.Argument(help="Aliases to check (all).")] = None,
                 providers: ProvidersOption = None, models: ModelsOption = None) -> None:
    """Send one tiny request per model: prints its latency or the exact error. Exit 1 if any failed."""
    from gristmill.llm import check_models as check

    try:
        results = check(aliases, providers=providers, models=models)
    except GristmillError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    for result in results:
        mark = "[green]ok[/]" if result.ok else "[bold red]failed[/]"
        console.print(f"{mark} {escape(result.alias)}: {escape(result.detail)}", highlight=False, soft_wrap=True)
    if not all(result.ok for result in results):
        raise typer.Exit(1)
