"""The ``callable`` validator: a user function judges a chunk, given as a pandas DataFrame.

``fn(df)`` receives the target columns (index 0..n-1) and returns one of:

- a sequence of bools (list, numpy array, Series), one per row;
- a DataFrame or a dict of sequences with ``is_valid`` and optionally ``messages`` (per row:
  None, a string, a mapping with ``message``/``target``/``line``/``code``, or a list of those)
  and ``score`` (a number or None).

A function that raises fails the chunk's cells (recorded per row, like a custom column that
raises); a result of the wrong shape is a bug in the function and stops the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gristmill.config.validation import CallableValidatorParams, ValidationColumn
from gristmill.engine.validators.base import (
    CellFailure,
    Chunk,
    Outcome,
    Verdict,
    messages_from,
    score_from,
)
from gristmill.errors import GenerationError


class CallableValidator:
    max_parallel = 1

    def __init__(self, column: ValidationColumn, params: CallableValidatorParams) -> None:
        self.name = column.name
        self.function = params.resolve(column.name)
        self.default_target = column.target_columns[0] if len(column.target_columns) == 1 else None

    async def validate(self, chunk: Chunk) -> list[Outcome]:
        # User code may block: off the event loop.
        return await asyncio.to_thread(self._validate, chunk)

    def _validate(self, chunk: Chunk) -> list[Outcome]:
        df = pd.DataFrame({t: [values[t] for values in chunk.values] for t in chunk.targets}, index=range(len(chunk)))
        try:
            result = self.function(df)
        except Exception as exc:  # user code: any failure fails the cells, with its reason
            reason = f"validator function raised {type(exc).__name__}: {exc}"
            return [CellFailure(reason) for _ in range(len(chunk))]
        return self._verdicts(result, len(chunk), chunk.row_ids[0])

    def _verdicts(self, result: Any, n: int, first_row: int) -> list[Outcome]:
        if isinstance(result, pd.DataFrame):
            result = {name: result[name] for name in result.columns}
        if not isinstance(result, Mapping):
            result = {"is_valid": result}
        if "is_valid" not in result:
            raise self._error(f"returned {sorted(map(str, result))} without 'is_valid'", first_row)
        columns = {key: self._column(result[key], key, n, first_row) for key in ("is_valid", "messages", "score")
                   if key in result}
        verdicts: list[Outcome] = []
        for i in range(n):
            flag = columns["is_valid"][i]
            if not isinstance(flag, bool | np.bool_):
                raise self._error(f"gave is_valid={flag!r} for row {first_row + i}; return True or False", first_row)
            try:
                messages = messages_from(columns["messages"][i], self.default_target) if "messages" in columns else []
                score = score_from(columns["score"][i]) if "score" in columns else None
            except ValueError as exc:
                raise self._error(f"row {first_row + i}: {exc}", first_row) from None
            verdicts.append(Verdict(bool(flag), tuple(messages), score))
        return verdicts

    def _column(self, values: Any, key: str, n: int, first_row: int) -> list[Any]:
        if isinstance(values, pd.Series):
            if len(values) == n and values.index.is_unique and values.index.isin(range(n)).all():
                values = values.reindex(range(n))  # a sorted Series maps back to its rows
            values = values.tolist()
        elif isinstance(values, np.ndarray):
            values = values.tolist()
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise self._error(f"returned a single value for {key!r}; return one per row", first_row)
        if len(values) != n:
            raise self._error(f"returned {len(values)} values for {key!r} for {n} rows", first_row)
        return list(values)

    def _error(self, what: str, first_row: int) -> GenerationError:
        return GenerationError(f"validation column {self.name!r}: the validator function {what} (chunk starting at "
                               f"row {first_row}); see docs/validation.md for what it may return")
