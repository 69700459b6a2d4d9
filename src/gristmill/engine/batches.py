"""Build one batch in memory: seed rows, then every column in dependency order, then processors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.config.columns import ColumnConfig
from gristmill.config.dataset import DatasetConfig
from gristmill.engine.generators.base import (
    BatchFrame,
    ColumnGenerator,
    ColumnValues,
    EngineContext,
    GeneratorFactory,
    GroupGeneratorFactory,
    generator_factory,
)
from gristmill.engine.graph import generation_order
from gristmill.engine.processors import ProcessedBatch, apply_processors, check_processors, columns_to_drop
from gristmill.engine.seeds import SeedReader
from gristmill.errors import ConfigError, GenerationError


def check_columns(config: DatasetConfig, seed_columns: Sequence[str] = ()) -> list[ColumnConfig]:
    """Static checks of the column graph; returns the generation order. Raises ConfigError."""
    order = generation_order(config.columns, available=seed_columns)
    for kind, factory in _factories(config).items():
        if isinstance(factory, GroupGeneratorFactory):
            factory.check_group(_of_type(config.columns, kind), config, seed_columns)
    for column in config.columns:
        column.check_ready()  # e.g. an unimportable function is a config error now, not at batch 0
    output_names = list(seed_columns) + [o for c in config.columns for o in c.output_columns()]
    columns_to_drop(config.processors, output_names)  # a drop pattern matching nothing is an error
    for proc in config.processors:
        missing = sorted(proc.required_columns() - set(output_names))
        if missing:
            raise ConfigError(f"processor {proc.name!r} references missing column(s) {missing}")
    check_processors(config.processors)
    return order


def _factories(config: DatasetConfig) -> dict[str, GeneratorFactory | GroupGeneratorFactory]:
    """The generator factory of every column type in the config, so a missing one fails before any work."""
    kinds = [c.column_type for c in config.columns]
    if config.constraints:
        # Constraints are enforced by the sampler group, so it checks them even without sampler columns.
        kinds.append("sampler")
    return {kind: generator_factory(kind) for kind in dict.fromkeys(kinds)}


def _of_type(columns: Sequence[ColumnConfig], kind: str) -> list[ColumnConfig]:
    return [c for c in columns if c.column_type == kind]


@dataclass
class BatchPlan:
    """Everything needed to build any batch of a dataset, prepared once per run.

    ``generators`` run in order: group generators (one per grouped column type, e.g. all samplers
    with their constraints) first, then one generator per other column in dependency order.
    """

    config: DatasetConfig
    seed: SeedReader | None
    generators: list[tuple[str, ColumnGenerator]]
    output_names: list[str]
    drop: list[str]

    @classmethod
    def prepare(cls, config: DatasetConfig, context: EngineContext, seed: SeedReader | None) -> BatchPlan:
        seed_names = list(seed.table.column_names) if seed is not None else []
        order = check_columns(config, seed_names)
        factories = _factories(config)
        groups: list[tuple[str, ColumnGenerator]] = []
        singles: list[tuple[str, ColumnGenerator]] = []
        for kind, factory in factories.items():
            members = _of_type(order, kind)
            if isinstance(factory, GroupGeneratorFactory) and members:
                groups.append((f"{kind} columns", factory.build_group(members, config, context)))
        for column in order:
            factory = factories[column.column_type]
            if not isinstance(factory, GroupGeneratorFactory):
                singles.append((column.name, factory(column, context)))
        generated = [name for c in config.columns for name in c.output_columns()]
        output_names = seed_names + generated
        flagged = [name for c in config.columns if c.drop for name in c.output_columns()]
        drop = columns_to_drop(config.processors, output_names, flagged)
        return cls(config, seed, groups + singles, output_names, drop)

    async def build(self, *, batch_index: int, row_offset: int, num_rows: int, run_seed: int) -> ProcessedBatch:
        frame = BatchFrame(batch_index=batch_index, row_offset=row_offset, num_rows=num_rows, run_seed=run_seed)
        if self.seed is not None:
            seed_rows = self.seed.rows_for(row_offset, num_rows)
            for name in seed_rows.column_names:
                frame.set(name, seed_rows.column(name))
        for source, generator in self.generators:
            self._store(frame, source, await generator.generate(frame))
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
