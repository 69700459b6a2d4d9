"""``gristmill report DIR [-o FILE]``: one self-contained HTML page about a dataset or workflow.

Thin over ``gristmill.report``, loaded when the command runs (pyarrow and numpy stay out of
``gristmill --help``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gristmill.cli.errors import DebugOption, user_errors


def report_command(
    directory: Annotated[Path, typer.Argument(help="A dataset directory or a workflow directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Where to write the HTML (default: DIR/report.html).")] = None,
    debug: DebugOption = False,
) -> None:
    """Write an HTML report of a dataset or workflow: column charts, sample records, model usage.

    For a workflow it also draws the stage graph, with each stage's status and last action."""
    from gristmill.report import report_kind, write_dataset_report, write_workflow_report

    kind = report_kind(directory)
    typer.echo(f"{directory} is a {kind} directory")
    writer = write_workflow_report if kind == "workflow" else write_dataset_report
    typer.echo(f"wrote {writer(directory, output)}")  # plain: a long path must stay on one line


def register(app: typer.Typer) -> None:
    """Add ``report`` to the top-level ``gristmill`` app."""
    app.command("report")(user_errors(report_command))
