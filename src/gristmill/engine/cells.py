"""Which cells of a batch are generated: ``skip`` conditions, cells that read a failed or
skipped cell, and the per-row ``__errors`` record of cells that failed for good.

A cell is *blocked* when it is not generated: its column's ``skip`` condition held (or it
reads such a cell), or it reads a cell that *failed* (or was blocked by one). Blocked and failed
cells hold null and cost nothing. Failures, and cells blocked by one, are listed per row in
``__errors`` (``column``, ``kind`` 'failed' | 'skipped', ``reason``, ``attempts``), which is what
``retry_failed`` regenerates; a cell skipped by the user's own condition is not an error.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.config.columns import ColumnConfig, skip_template
from gristmill.engine.generators.base import BatchFrame, CellProblem, ColumnValues, to_pylist
from gristmill.engine.sandbox import TemplateLimits
from gristmill.errors import GenerationError

ERRORS_COLUMN = "__errors"
FAILED_COLUMN = "__failed"  # on_failed_rows="mark": True where the row has a failed cell
ROW_COLUMN = "__row"  # in dropped-rows files: the dataset-wide index of each row
ERROR_TYPE = pa.struct([("column", pa.string()), ("kind", pa.string()), ("reason", pa.string()),
                        ("attempts", pa.int32())])
ERRORS_TYPE = pa.list_(ERROR_TYPE)
_TRUE = frozenset({"true", "1", "yes"})


@dataclass
class CellGate:
    """The blocked cells of one batch, by output column, as generation goes."""

    num_rows: int
    failed: dict[str, np.ndarray] = field(default_factory=dict)  # failed, or blocked by a failure
    skipped: dict[str, np.ndarray] = field(default_factory=dict)  # blocked by a skip condition

    def blocked_by(self, column: ColumnConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(rows blocked by a failure, rows blocked by a skip, the failed columns read) for ``column``."""
        failed = np.zeros(self.num_rows, dtype=bool)
        skipped = np.zeros(self.num_rows, dtype=bool)
        sources: list[str] = []
        if column.propagate_skip:
            for ref in sorted(column.dependencies()):
                if ref in self.failed and self.failed[ref].any():
                    failed |= self.failed[ref]
                    sources.append(ref)
                if ref in self.skipped:
                    skipped |= self.skipped[ref]
        return failed, skipped & ~failed, sources

    def record(self, outputs: Iterable[str], failed: np.ndarray, skipped: np.ndarray) -> None:
        for name in outputs:
            self.failed[name] = failed
            self.skipped[name] = skipped


def skip_mask(column: ColumnConfig, frame: BatchFrame, candidates: np.ndarray, limits: TemplateLimits) -> np.ndarray:
    """Rows among ``candidates`` where ``column.skip`` holds (a condition is never evaluated on a
    row already blocked: it would read nulls)."""
    if column.skip is None or not candidates.any():
        return np.zeros(frame.num_rows, dtype=bool)
    try:
        return skip_mask_of(column.skip, frame, limits, candidates)
    except GenerationError as exc:
        raise GenerationError(f"column {column.name!r} skip condition: {exc}") from None


def skip_mask_of(condition: str, frame: BatchFrame, limits: TemplateLimits,
                 rows: np.ndarray | None = None) -> np.ndarray:
    """Rows (among ``rows``, default all) where the Jinja ``condition`` holds (renders 'True', '1'
    or 'yes'). Only those rows are rendered: a blocked row holds nulls a condition cannot read."""
    mask = np.zeros(frame.num_rows, dtype=bool)
    picked = np.arange(frame.num_rows) if rows is None else np.flatnonzero(rows)
    if picked.size == 0:
        return mask
    texts = frame.render(skip_template(condition), [int(i) for i in picked], limits)
    mask[picked] = [text.strip().lower() in _TRUE for text in texts]
    return mask


def blank(values: ColumnValues, rows: np.ndarray) -> ColumnValues:
    """``values`` with null in ``rows`` (an Arrow array keeps its type)."""
    if not rows.any():
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind not in "OU":
        values = pa.array(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        blanked: pa.Array = pc.if_else(pa.array(rows), pa.nulls(len(values), values.type), values)
        return blanked
    out = to_pylist(values)
    for i in np.flatnonzero(rows):
        out[i] = None
    return out


def merge(old: ColumnValues, new: ColumnValues, rows: np.ndarray) -> ColumnValues:
    """``old`` with ``new``'s values in ``rows`` (a retry replaces only the cells it regenerated)."""
    if isinstance(old, pa.ChunkedArray):
        old = old.combine_chunks()
    if isinstance(new, pa.ChunkedArray):
        new = new.combine_chunks()
    if isinstance(old, pa.Array) and isinstance(new, pa.Array) and old.type == new.type:
        return pc.if_else(pa.array(rows), new, old)
    out = to_pylist(old)
    fresh = to_pylist(new)
    for i in np.flatnonzero(rows):
        out[i] = fresh[i]
    return out


def problems_of(frame: BatchFrame, column: str) -> np.ndarray:
    """Rows where ``column`` has a failed cell recorded in ``frame``."""
    mask = np.zeros(frame.num_rows, dtype=bool)
    for row, problems in frame.problems.items():
        if any(p.column == column and p.kind == "failed" for p in problems):
            mask[row] = True
    return mask


def note_skipped(frame: BatchFrame, column: str, rows: np.ndarray, sources: Sequence[str]) -> None:
    """Record ``column``'s cells in ``rows`` as skipped because they read a failed cell."""
    reason = f"reads {', '.join(repr(s) for s in sources)}, which failed"
    for i in np.flatnonzero(rows):
        frame.problems.setdefault(int(i), []).append(CellProblem(column, "skipped", reason, 0))


def forget(frame: BatchFrame, columns: Iterable[str], rows: np.ndarray) -> None:
    """Drop the recorded problems of ``columns`` in ``rows`` (a retry is about to regenerate them)."""
    names = set(columns)
    for i in np.flatnonzero(rows):
        kept = [p for p in frame.problems.get(int(i), []) if p.column not in names]
        if kept:
            frame.problems[int(i)] = kept
        else:
            frame.problems.pop(int(i), None)


def errors_array(frame: BatchFrame) -> pa.Array:
    """The ``__errors`` column of the batch: a list per row, null where the row has no problem."""
    values: list[Any] = [None] * frame.num_rows
    for row, problems in frame.problems.items():
        values[row] = [p.to_dict() for p in problems] if problems else None
    return pa.array(values, type=ERRORS_TYPE)


def read_errors(frame: BatchFrame, errors: pa.Array | pa.ChunkedArray) -> None:
    """Load a stored ``__errors`` column (a seed's, or a batch being retried) into ``frame``."""
    for i, entries in enumerate(errors.to_pylist()):
        if entries:
            frame.problems[i] = [CellProblem(e["column"], e["kind"], e["reason"], e["attempts"] or 0)
                                 for e in entries]


def retryable_rows(errors: pa.Array | pa.ChunkedArray, own_columns: Collection[str]) -> int:
    """Rows whose ``__errors`` lists a failed cell of ``own_columns`` (the dataset's own columns):
    what ``retry_failed`` can regenerate. A row whose only failures came with its seed (an upstream
    stage's cells) is not counted: retrying here cannot change it, only retrying upstream can."""
    return sum(1 for entries in errors.to_pylist()
               if entries and any(e["kind"] == "failed" and e["column"] in own_columns for e in entries))


def failed_rows(errors: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True for rows whose ``__errors`` lists a problem."""
    return np.asarray(pc.fill_null(pc.greater(pc.list_value_length(errors), 0), False).to_numpy(
        zero_copy_only=False), dtype=bool)
