"""Progress reporting for long runs: a rich bar with rows/s and ETA, or nothing."""

from __future__ import annotations

import sys
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressReporter(Protocol):
    def start(self, label: str, *, total: int, completed: int) -> None: ...
    def advance(self, rows: int) -> None: ...
    def finish(self) -> None: ...


class NullProgress:
    """Reports nothing (previews, tests, non-interactive runs that asked for quiet)."""

    def start(self, label: str, *, total: int, completed: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def finish(self) -> None:
        pass


class RowsPerSecondColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[no-untyped-def]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="cyan")


class RichProgress:
    """One bar per ``start()``; bars of earlier stages stay on screen."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RowsPerSecondColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console or Console(file=sys.stderr), transient=False)
        self._task: TaskID | None = None
        self._started = False

    def start(self, label: str, *, total: int, completed: int) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        self._task = self._progress.add_task(label, total=total, completed=completed)

    def advance(self, rows: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, rows)

    def finish(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False
        self._task = None


def default_progress(show: bool) -> ProgressReporter:
    """A rich bar on an interactive stderr when ``show``; otherwise nothing."""
    if show and sys.stderr.isatty():
        return RichProgress()
    return NullProgress()
