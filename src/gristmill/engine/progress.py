"""Progress of long runs, on a terminal only: one line per dataset (per workflow stage).

A line counts rows: the committed batches, plus the LLM cells finished in the batches still being
built (divided by the LLM columns per row), so a 200-row LLM job moves as answers arrive rather
than when its one batch commits. Beside the bar: cells, requests in flight, requests/s, tokens/s,
cache hits, failures, retries (and corrections), and the cost so far when every model used has
prices. Every line of a process shares one live display, since workflow branches run in parallel
threads and the terminal is one; a finished line stays on screen. ``rich`` is imported only when a
display starts.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from gristmill.config.dataset import DatasetConfig
    from gristmill.config.models import ModelPrice
    from gristmill.llm.runtime import LLMRuntime

Usage = Mapping[str, Mapping[str, int]]  # model alias -> counters, as in EngineContext.usage


class InFlight(Protocol):
    """A model's throttle: how many of its requests hold a slot (are sent and not answered)."""

    in_flight: int


class CellProgress(Protocol):
    """What generators report as cells finish (``EngineContext.progress``)."""

    def cells_done(self, count: int) -> None:
        """``count`` cells finished: answered, served from the cache, failed or skipped."""

    def waiting(self, throttle: InFlight, change: int) -> None:
        """A cell's request started (+1) or ended (-1) on the model behind ``throttle``."""


class ProgressReporter(CellProgress, Protocol):
    """One line: ``start`` (again after ``finish``, or to change the total), ``advance`` per commit."""

    def start(self, label: str, *, total: int, completed: int, cells_per_row: int = 0) -> None: ...
    def watch(self, usage: Usage, prices: Mapping[str, ModelPrice]) -> None: ...
    def advance(self, rows: int) -> None: ...
    def finish(self) -> None: ...


class NullProgress:
    """Reports nothing (previews, tests, output that is not a terminal, ``show_progress=False``)."""

    def start(self, label: str, *, total: int, completed: int, cells_per_row: int = 0) -> None:
        pass

    def watch(self, usage: Usage, prices: Mapping[str, ModelPrice]) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def finish(self) -> None:
        pass

    def cells_done(self, count: int) -> None:
        pass

    def waiting(self, throttle: InFlight, change: int) -> None:
        pass


class _Display:
    """The process's one live display: it runs while some line is open, lines stay when it stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._open: set[TaskID] = set()

    def open(self, label: str, *, total: int, completed: int, line: RichProgress) -> tuple[Progress, TaskID]:
        with self._lock:
            if self._progress is None:
                self._progress = _new_progress()
                self._progress.start()
            task = self._progress.add_task(label, total=total, completed=completed, line=line)
            self._open.add(task)
            return self._progress, task

    def close(self, progress: Progress, task: TaskID) -> None:
        with self._lock:
            self._open.discard(task)
            if not self._open and progress is self._progress:
                progress.stop()  # draws the final state of every line once more
                self._progress = None


def _new_progress() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Column

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
        # Formatting the line calls its __str__, so the counters are read at each refresh.
        TextColumn("{task.fields[line]}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis")),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=Console(file=sys.stderr), refresh_per_second=4, transient=False)


_DISPLAY = _Display()


class RichProgress:
    """One line of the shared display; cells and counters come from the run's generators."""

    def __init__(self, display: _Display = _DISPLAY) -> None:
        self._display = display
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total = self._base = self._committed = self._cells = self._cells_per_row = 0
        self._pending: dict[int, tuple[InFlight, int]] = {}  # id(throttle) -> (throttle, cells waiting on it)
        self._usage: Usage = {}
        self._prices: Mapping[str, ModelPrice] = {}
        self._usage_at_start: dict[str, dict[str, int]] = {}
        self._started_at = time.monotonic()
        self._ended_at: float | None = None  # a finished line stays on screen: its rates stop there

    def start(self, label: str, *, total: int, completed: int, cells_per_row: int = 0) -> None:
        self._total, self._base, self._committed, self._cells = total, completed, 0, 0
        self._cells_per_row = cells_per_row
        if self._progress is not None and self._task is not None:  # another round (target_valid_records)
            self._progress.update(self._task, description=label, total=total, completed=completed)
            return
        self._usage_at_start = _snapshot(self._usage)
        self._started_at, self._ended_at = time.monotonic(), None
        self._progress, self._task = self._display.open(label, total=total, completed=completed, line=self)

    def watch(self, usage: Usage, prices: Mapping[str, ModelPrice]) -> None:
        """Show the counters of ``usage`` (the run's, updated as requests finish) and their cost."""
        self._usage, self._prices = usage, prices
        self._usage_at_start = _snapshot(usage)

    def advance(self, rows: int) -> None:
        self._committed += rows
        self._update()

    def finish(self) -> None:
        if self._progress is not None and self._task is not None:
            self._update()
            self._ended_at = time.monotonic()
            self._display.close(self._progress, self._task)
        self._progress = self._task = None

    def cells_done(self, count: int) -> None:
        self._cells += count
        self._update()

    def waiting(self, throttle: InFlight, change: int) -> None:
        _, count = self._pending.get(id(throttle), (throttle, 0))
        self._pending[id(throttle)] = (throttle, count + change)

    def _update(self) -> None:
        progress, task = self._progress, self._task
        if progress is not None and task is not None:
            progress.update(task, completed=self._completed())

    def _completed(self) -> float:
        """Committed rows, or the rows the finished cells amount to when that is more."""
        from_cells = self._cells / self._cells_per_row if self._cells_per_row else 0.0
        return self._base + max(float(self._committed), from_cells)

    def __str__(self) -> str:
        seconds = (self._ended_at or time.monotonic()) - self._started_at
        per_second = 1 / seconds if seconds > 0 else 0.0
        done = self._completed()
        parts = [f"{int(done):,}/{self._total:,} rows", f"{(done - self._base) * per_second:,.1f} rows/s"]
        if self._cells_per_row:
            parts.append(f"{self._cells:,}/{(self._total - self._base) * self._cells_per_row:,} cells")
        parts += _llm_summary(self._usage, self._usage_at_start, self._prices, in_flight=self._in_flight(),
                              per_second=per_second)
        return " · ".join(parts)

    def _in_flight(self) -> int:
        """Requests of this line holding a slot: a model's requests in flight, at most this line's
        waiting cells (other stages may be using the same model)."""
        return sum(min(count, throttle.in_flight) for throttle, count in list(self._pending.values()))


def _snapshot(usage: Usage) -> dict[str, dict[str, int]]:
    # dict() copies in one step under the GIL while the event loop's thread adds to the counters.
    return {alias: dict(counters) for alias, counters in list(usage.items())}


def _llm_summary(usage: Usage, before: Mapping[str, Mapping[str, int]], prices: Mapping[str, ModelPrice], *,
                 in_flight: int, per_second: float) -> list[str]:
    """The LLM counters since the line started; nothing when the run asked no model."""
    now = _snapshot(usage)
    if not now:
        return []
    spent = {alias: Counter({key: value - before.get(alias, {}).get(key, 0) for key, value in counters.items()})
             for alias, counters in now.items()}
    total: Counter[str] = Counter()
    for counters in spent.values():
        total.update(counters)
    parts = [f"{in_flight} in flight", f"{total['requests'] * per_second:,.1f} req/s",
             f"{(total['input_tokens'] + total['output_tokens']) * per_second:,.0f} tok/s",
             f"{total['cache_hits']:,} cached", f"{total['failures']:,} failed", f"{total['retries']:,} retries"]
    if total["corrections"]:
        parts.append(f"{total['corrections']:,} corrections")
    cost = _cost(spent, prices)
    if cost is not None:
        parts.append(f"cost {cost:,.4f}")  # in the currency of the models' prices
    return parts


def _cost(spent: Mapping[str, Mapping[str, int]], prices: Mapping[str, ModelPrice]) -> float | None:
    """What the tokens ``spent`` cost; None unless every model asked has a price."""
    cost = 0.0
    for alias, counters in spent.items():
        price = prices.get(alias)
        if price is None:
            return None
        cost += price.cost(counters)
    return cost


def model_prices(config: DatasetConfig, llm: LLMRuntime | None) -> dict[str, ModelPrice]:
    """Prices of the model aliases ``config`` calls, for those whose ``ModelConfig`` has one."""
    if llm is None:
        return {}
    from gristmill.llm import pricing

    return pricing.model_prices(llm, {a for column in config.columns for a in column.model_aliases()}, config.models)


def llm_cells_per_row(config: DatasetConfig) -> int:
    """LLM cells a row of ``config`` takes: one per column that calls a model."""
    return sum(1 for column in config.columns if column.model_aliases())


def default_progress(show: bool) -> ProgressReporter:
    """A line of the live display on an interactive stderr when ``show``; otherwise nothing."""
    if show and sys.stderr.isatty():
        return RichProgress()
    return NullProgress()
