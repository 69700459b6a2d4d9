"""Sampler columns: generated together, so constraints can span them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gristmill.config.samplers import SamplerColumn
from gristmill.engine.generators.base import BatchFrame, ColumnValues, EngineContext
from gristmill.sampling import sample_columns


class SamplerGroupGenerator:
    """All sampler columns of a config with its constraints; runs before other columns."""

    def __init__(self, columns: Sequence[SamplerColumn], constraints: Sequence[Any], context: EngineContext) -> None:
        self.columns = list(columns)
        self.constraints = list(constraints)

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        return dict(sample_columns(self.columns, self.constraints, num_rows=frame.num_rows,
                                   run_seed=frame.run_seed, batch_index=frame.batch_index,
                                   context=dict(frame.columns)))
