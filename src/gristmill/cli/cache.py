"""``gristmill cache stats | logs | clear PATH``: the response cache of a dataset or workflow.

PATH is a dataset directory, a workflow directory, or the ``response-cache.sqlite`` file.
Clearing it means the next run pays again for every LLM request. Thin commands over
``gristmill.llm.ResponseCache``, loaded when a command runs.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


@app.command("logs")
def logs(path: PathArg,
         limit: Annotated[int, typer.Option("--num", "-n", min=1, help="Answers to show, newest first.")] = 10,
         column: Annotated[str | None, typer.Option(
             "--column", help="Only this column ('name', or 'stage/name' in a workflow).")] = None,
         stage: Annotated[str | None, typer.Option("--stage", help="Only this workflow stage's columns.")] = None,
         ) -> None:
    """Show the newest cached answers: when, stage, column, row, prompt, answer (and reasoning), tokens.

    Answers cached before prompts and tokens were recorded show '-' in those columns."""
    file = _cache_file(path)
    _open(file, "readonly").close()  # refuse foreign files with one clean line
    table = Table("when", "stage", "column", "row", "prompt", "answer", "tokens in/out", show_lines=True)
    for created, scoped, value in _newest(file, limit, column=column, stage=stage):
        stage_name, _, name = scoped.rpartition("/")
        stored = json.loads(value)
        entry = stored if isinstance(stored, dict) else {}
        tokens = entry.get("u")
        table.add_row(datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S"), escape(stage_name or "-"),
                      escape(name), str(entry.get("row", "-")), escape(_clip(entry.get("p")) or "-"),
                      escape(_answer(stored)),
                      f"{tokens[0]}/{tokens[1]}" if isinstance(tokens, list) and len(tokens) == 2 else "-")
    console.print(table)


def _newest(file: Path, limit: int, *, column: str | None, stage: str | None) -> list[tuple[float, str, str]]:
    """(created, column as stored, value JSON) of the newest entries, read-only."""
    where, args = [], []
    if column is not None:
        where.append("(column_name = ? OR column_name LIKE ?)")
        args += [column, f"%/{column}"]
    if stage is not None:
        where.append("column_name LIKE ?")
        args.append(f"{stage}/%")
    sql = ("SELECT created, column_name, value FROM responses" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY created DESC LIMIT ?")
    db = sqlite3.connect(f"file:{file.absolute()}?mode=ro", uri=True)
    try:
        return list(db.execute(sql, [*args, limit]))
    finally:
        db.close()


def _clip(text: object, limit: int = 300) -> str:
    if not isinstance(text, str):
        return ""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _answer(stored: object) -> str:
    """The stored answer as text: the value, then the reasoning when the column kept it."""
    if not isinstance(stored, dict) or "v" not in stored:
        return _clip(str(stored))
    answer = stored["v"] if isinstance(stored["v"], str) else json.dumps(stored["v"], ensure_ascii=False)
    return answer + (f"\n[reasoning] {stored['r']}" if stored.get("r") else "")
