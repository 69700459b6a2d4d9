"""Sampler columns: one generator for all of them, so constraints can span columns.

Registered as the ``sampler`` column type's generator; being a group factory
(``base.GroupGeneratorFactory``), it is built once per config with every sampler column and the
config's constraints, and runs before the per-column generators.
"""

from __future__ import annotations

from collections.abc import Sequence

from gristmill.config.constraints import ConstraintModel
from gristmill.config.dataset import DatasetConfig
from gristmill.config.samplers import SamplerColumn
from gristmill.engine.generators.base import BatchFrame, ColumnValues, EngineContext
from gristmill.errors import ConfigError
from gristmill.sampling import sample_columns, validate_sampler_columns


class SamplerGroupGenerator:
    """All sampler columns of a config with its constraints; runs before other columns."""

    def __init__(self, columns: Sequence[SamplerColumn], constraints: Sequence[ConstraintModel],
                 context: EngineContext | None = None) -> None:
        self.columns = list(columns)
        self.constraints = list(constraints)

    @classmethod
    def check_group(cls, columns: Sequence[SamplerColumn], config: DatasetConfig,
                    seed_columns: Sequence[str]) -> None:
        """Samplers read only samplers and seed columns (they are drawn first); then every sampler
        and constraint check of ``sampling.validate_sampler_columns``."""
        samplers = {c.name for c in columns}
        for column in columns:
            late = sorted(column.required_columns() - samplers - set(seed_columns))
            if late:
                raise ConfigError(f"sampler column {column.name!r} depends on {late}, which are not sampler or "
                                  "seed columns; samplers are drawn first and may only depend on each other")
        validate_sampler_columns(columns, config.constraints, known_columns=seed_columns)

    @classmethod
    def build_group(cls, columns: Sequence[SamplerColumn], config: DatasetConfig,
                    context: EngineContext) -> SamplerGroupGenerator:
        """The generator drawing ``columns`` under the config's constraints."""
        return cls(columns, config.constraints, context)

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        return dict(sample_columns(self.columns, self.constraints, num_rows=frame.num_rows,
                                   run_seed=frame.run_seed, batch_index=frame.batch_index,
                                   context=dict(frame.columns)))
