"""Build one batch in memory: seed rows, then every column in dependency order, then processors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.config.columns import ColumnConfig, CustomColumn
from gristmill.config.dataset import DatasetConfig
from gristmill.config.samplers import SamplerColumn
from gristmill.engine.generators import BatchFrame, ColumnGenerator, EngineContext, build_generator
from gristmill.engine.generators.base import ColumnValues
from gristmill.engine.generators.sampler import SamplerGroupGenerator
from gristmill.engine.graph import generation_order
from gristmill.engine.processors import ProcessedBatch, apply_processors, columns_to_drop
from gristmill.engine.seeds import SeedReader
from gristmill.errors import ConfigError, GenerationError
from gristmill.sampling import validate_sampler_columns


def check_columns(config: DatasetConfig, seed_columns: Sequence[str] = ()) -> list[ColumnConfig]:
    """Static checks of the column graph; returns the generation order. Raises ConfigError."""
    order = generation_order(config.columns, available=seed_columns)
    sampler_columns = [c for c in config.columns if isinstance(c, SamplerColumn)]
    samplers = {c.name for c in sampler_columns}
    for column in sampler_columns:
        late = sorted(column.required_columns() - samplers - set(seed_columns))
        if late:
            raise ConfigError(f"sampler column {column.name!r} depends on {late}, which are not sampler or "
                              "seed columns; samplers are drawn first and may only depend on each other")
    validate_sampler_columns(sampler_columns, config.constraints, known_columns=seed_columns)
    for custom in config.columns:
        if isinstance(custom, CustomColumn):
            custom.resolve()  # an unimportable function is a config error now, not at batch 0
    output_names = list(seed_columns) + [o for c in config.columns for o in c.output_columns()]
    columns_to_drop(config.processors, output_names)  # a drop pattern matching nothing is an error
    for proc in config.processors:
        required: set[str] = getattr(proc, "required_columns", set)()
        missing = sorted(required - set(output_names))
        if missing:
            raise ConfigError(f"processor {proc.name!r} references missing column(s) {missing}")
    return order


@dataclass
class BatchPlan:
    """Everything needed to build any batch of a dataset, prepared once per run."""

    config: DatasetConfig
    seed: SeedReader | None
    samplers: SamplerGroupGenerator | None
    generators: list[tuple[ColumnConfig, ColumnGenerator]]
    output_names: list[str]
    drop: list[str]

    @classmethod
    def prepare(cls, config: DatasetConfig, context: EngineContext, seed: SeedReader | None) -> BatchPlan:
        seed_names = list(seed.table.column_names) if seed is not None else []
        order = check_columns(config, seed_names)
        sampler_columns = [c for c in order if isinstance(c, SamplerColumn)]
        samplers = SamplerGroupGenerator(sampler_columns, config.constraints, context) if sampler_columns else None
        generators = [(c, build_generator(c, context)) for c in order if not isinstance(c, SamplerColumn)]
        generated = [name for c in config.columns for name in c.output_columns()]
        output_names = seed_names + generated
        flagged = [name for c in config.columns if c.drop for name in c.output_columns()]
        drop = columns_to_drop(config.processors, output_names, flagged)
        return cls(config, seed, samplers, generators, output_names, drop)

    async def build(self, *, batch_index: int, row_offset: int, num_rows: int, run_seed: int) -> ProcessedBatch:
        frame = BatchFrame(batch_index=batch_index, row_offset=row_offset, num_rows=num_rows, run_seed=run_seed)
        if self.seed is not None:
            seed_rows = self.seed.rows_for(row_offset, num_rows)
            for name in seed_rows.column_names:
                frame.set(name, seed_rows.column(name))
        if self.samplers is not None:
            self._store(frame, "samplers", await self.samplers.generate(frame))
        for column, generator in self.generators:
            self._store(frame, column.name, await generator.generate(frame))
        table = pa.table({name: _to_arrow(name, frame.columns[name]) for name in self.output_names})
        return apply_processors(table, self.config.processors, self.drop)

    @staticmethod
    def _store(frame: BatchFrame, source: str, values: dict[str, ColumnValues]) -> None:
        for name, column_values in values.items():
            if len(column_values) != frame.num_rows:
                raise GenerationError(f"{source} produced {len(column_values)} values for {name!r} in a batch of "
                                      f"{frame.num_rows} rows")
            frame.set(name, column_values)


def _to_arrow(name: str, values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        if isinstance(values, np.ndarray) and values.dtype.kind in "OU":
            return pa.array(values.tolist())
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise GenerationError(f"column {name!r} holds values of mixed types that parquet cannot store "
                              f"together ({exc}); make the column return one type") from None
