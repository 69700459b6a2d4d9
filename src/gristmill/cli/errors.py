"""How every command reports a user's mistake: one red line on stderr and exit code 1.

Its own module so sub-command modules can use it without importing ``cli.main`` (which
imports them).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

import gristmill as gm

err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
RetryFailedOption = Annotated[bool, typer.Option(
    "--retry-failed", help="Regenerate only the failed cells (listed in __errors) and the cells they blocked.")]
ProvidersOption = Annotated[Path | None, typer.Option(
    "--providers", help="providers.yaml to use (default: the one in $GRISTMILL_HOME, ~/.gristmill).")]
ModelsOption = Annotated[Path | None, typer.Option(
    "--models", help="models.yaml to use (default: the one in $GRISTMILL_HOME, ~/.gristmill).")]
ToolsOption = Annotated[Path | None, typer.Option(
    "--tools", help="tools.yaml (tool_providers, tool_configs) for columns with tool_alias (default: the one in "
                    "$GRISTMILL_HOME, ~/.gristmill; docs/tools.md).")]


OnFailedRowsOption = Annotated[str | None, typer.Option(
    "--on-failed-rows", help="keep | mark | drop: what the dataset holds of rows with a failed cell (default keep).")]


def user_errors(func: F) -> F:
    """Turn gristmill errors into one clear red line and exit code 1 (``--debug``: traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = _show_warning
                return func(*args, **kwargs)
        except gm.GristmillError as exc:
            if debug:
                raise
            print_error(f"{type(exc).__name__}: {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: completed batches are kept; rerun with --resume if-possible")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_error(text: str) -> None:
    """``error: <text>`` on one line, whatever the terminal width (YAML errors span lines)."""
    one_line = " ".join(text.split())
    err_console.print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def model_file(path: Path | None) -> Path | None:
    """A --providers / --models / --tools file, which must exist (a typo must not fall back to the defaults)."""
    if path is not None and not path.is_file():
        raise gm.ConfigError(f"registry file {str(path)!r} does not exist; check the path of "
                             "--providers / --models / --tools")
    return path
