"""``gristmill cache stats | clear PATH``: the response cache of a dataset or workflow.

PATH is a dataset directory, a workflow directory, or the ``response-cache.sqlite`` file.
Clearing it means the next run pays again for every LLM request. Thin commands over
``gristmill.llm.ResponseCache``, loaded when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from gristmill.cli.errors import print_error
from gristmill.errors import ArtifactError

if TYPE_CHECKING:
    from gristmill.llm import ResponseCache

CACHE_FILE = "response-cache.sqlite"

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()

PathArg = Annotated[Path, typer.Argument(help="Dataset or workflow directory, or the cache file.")]


def _cache_file(path: Path) -> Path:
    candidate = path / CACHE_FILE if path.is_dir() else path
    if not candidate.is_file():
        print_error(f"no response cache at {candidate} (runs write one as {CACHE_FILE} in the dataset or "
                    "workflow directory when the config has LLM columns)")
        raise typer.Exit(1)
    return candidate


def _open(file: Path, mode: str) -> ResponseCache:
    """The cache, or one clean error line (a non-SQLite or foreign SQLite file is never written to)."""
    from gristmill.llm import ResponseCache

    try:
        return ResponseCache(file, mode=mode)
    except ArtifactError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None


@app.command("stats")
def stats(path: PathArg) -> None:
    """Entries (per column) and size on disk."""
    with _open(_cache_file(path), "readonly") as cache:
        info = cache.stats()
    console.print(f"{escape(info['path'])}: {info['entries']} responses, {info['bytes'] / 1e6:.2f} MB")
    for column, count in info["columns"].items():
        console.print(f"  {escape(column or '?')}: {count}")


@app.command("clear")
def clear(path: PathArg, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete every cached response (the next run pays for them again)."""
    file = _cache_file(path)
    _open(file, "readonly").close()  # refuse foreign files before asking
    if not yes:
        typer.confirm(f"Delete every cached response in {file}?", abort=True)
    with _open(file, "existing") as cache:
        removed = cache.clear()
    console.print(f"removed {removed} cached responses from {escape(str(file))}")
