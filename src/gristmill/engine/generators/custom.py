"""Custom columns: a user's Python function, per row or per batch."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from gristmill.config.columns import CustomColumn
from gristmill.engine.generators.base import BatchFrame, ColumnValues, EngineContext, ErrorWindow
from gristmill.errors import GenerationError


class CustomGenerator:
    """Row mode: a row whose function raises is a failed cell (recorded in ``__errors``; columns
    reading it are skipped), and the run stops when the failed share of recent rows passes
    ``RunConfig.max_error_rate``, as for LLM columns. Batch mode: an exception stops the run."""

    def __init__(self, column: CustomColumn, context: EngineContext) -> None:
        self.column = column
        self.function = column.resolve()
        self.writes = column.output_columns()
        self.errors = ErrorWindow(context.run_config.max_error_rate, context.run_config.error_window)

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        # User code may block (I/O, sleeps, a subprocess): off the Mill's event loop, so LLM
        # requests and concurrent workflow branches keep running meanwhile.
        work = self._per_row if self.column.mode == "row" else self._per_batch
        return await asyncio.to_thread(work, frame)

    def _per_row(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        outputs: dict[str, list[Any]] = {name: [None] * frame.num_rows for name in self.writes}
        rows = frame.rows(self.column.reads)
        for i in frame.active_rows():
            try:
                value = self.function(rows[i])
            except Exception as exc:  # user code: the cell fails, with its row and reason
                message = (f"custom column {self.column.name!r} failed on row {frame.row_offset + i}: "
                           f"{type(exc).__name__}: {exc}{self._reads_hint(exc)}")
                frame.fail(i, message)
                if self.errors.record(False, message):
                    raise self._stop_error() from exc
                continue
            self.errors.record(True)
            if len(self.writes) == 1 and not (isinstance(value, Mapping) and set(value) == set(self.writes)):
                outputs[self.writes[0]][i] = value
                continue
            if not isinstance(value, Mapping) or set(value) != set(self.writes):
                raise GenerationError(f"custom column {self.column.name!r} must return a dict with keys "
                                      f"{self.writes}, got {value!r} on row {frame.row_offset + i}")
            for name in self.writes:
                outputs[name][i] = value[name]
        if self.errors.tripped():
            raise self._stop_error()
        return dict(outputs)

    def _stop_error(self) -> GenerationError:
        window = self.errors
        return GenerationError(f"stopping: {window.failures} of the last {len(window.outcomes)} rows of custom column "
                               f"{self.column.name!r} failed; last error: {window.last_error}. Completed batches are "
                               "kept; fix the function and resume.")

    def _per_batch(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        df = pd.DataFrame({name: frame.pylist(name) for name in self.column.reads}, index=range(frame.num_rows))
        try:
            result = self.function(df)
        except Exception as exc:  # user code
            raise GenerationError(f"custom column {self.column.name!r} failed on batch {frame.batch_index}: "
                                  f"{type(exc).__name__}: {exc}{self._reads_hint(exc)}") from exc
        return self._check_batch_result(result, frame.num_rows)

    def _reads_hint(self, exc: Exception) -> str:
        key = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
        if isinstance(key, str) and key not in self.column.reads:
            return f" (the function only sees the columns in reads={self.column.reads}; add {key!r} to reads)"
        return ""

    def _check_batch_result(self, result: Any, num_rows: int) -> dict[str, ColumnValues]:
        if isinstance(result, pd.DataFrame):
            result = {name: result[name] for name in result.columns if name in self.writes}
        elif not isinstance(result, Mapping):
            if len(self.writes) != 1:
                raise GenerationError(f"custom column {self.column.name!r} writes {self.writes}; return a "
                                      "DataFrame or a dict of them")
            result = {self.writes[0]: result}
        missing = [name for name in self.writes if name not in result]
        if missing:
            raise GenerationError(f"custom column {self.column.name!r} did not return column(s) {missing}")
        out: dict[str, ColumnValues] = {}
        for name in self.writes:
            values = result[name]
            values = self._aligned(values, name, num_rows).tolist() if isinstance(values, pd.Series) else values
            if isinstance(values, str | bytes) or (not isinstance(values, Sequence) and not hasattr(values, "__len__")):
                raise GenerationError(f"custom column {self.column.name!r} returned a single value for {name!r}; "
                                      "in batch mode return one value per row")
            if len(values) != num_rows:
                raise GenerationError(f"custom column {self.column.name!r} returned {len(values)} values for "
                                      f"{name!r} in a batch of {num_rows} rows; it must keep the row count")
            out[name] = values
        return out

    def _aligned(self, series: pd.Series, name: str, num_rows: int) -> pd.Series:
        # pandas users expect alignment by index: a sorted or shuffled Series maps back to its rows.
        expected = pd.RangeIndex(num_rows)
        if series.index.equals(expected) or len(series) != num_rows:  # a wrong length is reported by the caller
            return series
        if series.index.is_unique and series.index.isin(expected).all():
            return series.reindex(expected)
        raise GenerationError(f"custom column {self.column.name!r} returned a Series for {name!r} whose index does "
                              "not match the batch's rows; keep the input DataFrame's index (or use "
                              ".reset_index(drop=True))")
