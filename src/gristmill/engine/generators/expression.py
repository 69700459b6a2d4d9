"""Expression columns: a sandboxed Jinja template per row, cast to the declared dtype."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gristmill.config.columns import ExpressionColumn
from gristmill.engine.generators.base import BatchFrame, ColumnValues, EngineContext
from gristmill.engine.sandbox import TemplateLimits
from gristmill.engine.templates import render_column
from gristmill.errors import GenerationError

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", "", "none"}


def _to_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)
    if not number.is_integer():  # '2.5' -> 2 would lose data silently
        raise ValueError(f"{text!r} is not a whole number")
    return int(number)


def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean")


_CASTS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "int": (_to_int, np.int64), "float": (float, np.float64), "bool": (_to_bool, np.bool_)}


class ExpressionGenerator:
    """Renders an expression column; each cell is bounded by the run's template limits."""

    def __init__(self, column: ExpressionColumn, context: EngineContext) -> None:
        self.column = column
        self.limits = TemplateLimits.from_run_config(context.run_config)

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        try:
            texts = render_column(self.column.expr, frame.num_rows, frame.pylist, frame.nested,
                                  row_offset=frame.row_offset, limits=self.limits)
        except GenerationError as exc:
            raise GenerationError(f"expression column {self.column.name!r}: {exc}") from exc
        return {self.column.name: self._cast(texts)}

    def _cast(self, texts: list[str]) -> ColumnValues:
        if self.column.dtype == "str":
            return texts
        convert, dtype = _CASTS[self.column.dtype]
        out = np.empty(len(texts), dtype=dtype)
        for i, text in enumerate(texts):
            try:
                out[i] = convert(text.strip())
            except (ValueError, OverflowError) as exc:
                raise GenerationError(f"expression column {self.column.name!r} renders {text!r}, which cannot be "
                                      f"cast to {self.column.dtype}: {exc}; fix the template or the dtype") from None
        return out
