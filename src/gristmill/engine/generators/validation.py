"""Validation columns: the rows of a batch, in chunks of ``batch_size``, through a validator.

Only the batch's active rows are judged (skipped rows cost nothing); chunks run at most
``validator.max_parallel`` at a time. The column is one struct per row of
``validators.RESULT_TYPE``, the same type in every batch; a row the validator could not judge is
null and recorded with :meth:`BatchFrame.fail`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pyarrow as pa

from gristmill.config.validation import ValidationColumn
from gristmill.engine.generators.base import BatchFrame, ColumnValues, EngineContext
from gristmill.engine.validators import RESULT_TYPE, build_validator
from gristmill.engine.validators.base import CellFailure, Chunk, Outcome

logger = logging.getLogger("gristmill")


class ValidationGenerator:
    def __init__(self, column: ValidationColumn, context: EngineContext) -> None:
        self.column = column
        self.validator = build_validator(column)

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        rows = frame.active_rows()
        chunks = [self._chunk(frame, rows[start:start + self.column.batch_size])
                  for start in range(0, len(rows), self.column.batch_size)]
        limit = asyncio.Semaphore(self.validator.max_parallel)

        async def judge(chunk: Chunk) -> list[Outcome]:
            async with limit:
                return await self.validator.validate(chunk)

        tasks = [asyncio.ensure_future(judge(chunk)) for chunk in chunks]
        try:
            results = await asyncio.gather(*tasks)
        finally:  # a bug raised by one chunk stops the others
            for task in tasks:
                task.cancel()
        cells: list[dict[str, Any] | None] = [None] * frame.num_rows
        failed: list[str] = []
        for chunk, outcomes in zip(chunks, results, strict=True):
            for row_id, outcome in zip(chunk.row_ids, outcomes, strict=True):
                row = row_id - frame.row_offset
                if isinstance(outcome, CellFailure):
                    frame.fail(row, outcome.reason, outcome.attempts)
                    failed.append(outcome.reason)
                else:
                    cells[row] = outcome.to_dict()
        if failed:
            logger.warning("validation column %r: %d cell(s) of batch %d could not be validated; first: %s",
                           self.column.name, len(failed), frame.batch_index, failed[0])
        return {self.column.name: pa.array(cells, type=RESULT_TYPE)}

    def _chunk(self, frame: BatchFrame, rows: list[int]) -> Chunk:
        targets = tuple(self.column.target_columns)
        columns = {target: frame.pylist(target) for target in targets}
        return Chunk(targets=targets, row_ids=[frame.row_offset + row for row in rows],
                     values=[{target: columns[target][row] for target in targets} for row in rows])
