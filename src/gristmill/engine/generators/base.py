"""The column-generator registry: how a column type produces values for one batch.

Each column type (``config.columns``) has a generator factory registered here under the same
name. The batch builder only calls ``await generator.generate(frame)``; it knows nothing about
samplers, templates or LLMs, which is what lets new column types plug in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
import pyarrow as pa

from gristmill.config.columns import ColumnConfig
from gristmill.config.dataset import DatasetConfig
from gristmill.config.run import RunConfig

ColumnValues: TypeAlias = np.ndarray | pa.Array | pa.ChunkedArray | Sequence[Any]


@dataclass
class BatchFrame:
    """The columns of one batch built so far, in generation order."""

    batch_index: int
    row_offset: int  # dataset-wide index of the batch's first row
    num_rows: int
    run_seed: int
    columns: dict[str, ColumnValues] = field(default_factory=dict)
    _pylists: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    def pylist(self, name: str) -> list[Any]:
        """Column values as Python objects (structs as dicts), converted once per batch."""
        cached = self._pylists.get(name)
        if cached is None:
            cached = to_pylist(self.columns[name])
            self._pylists[name] = cached
        return cached

    def nested(self, name: str, attrs: tuple[str, ...]) -> list[Any] | None:
        """Values of ``name.attr...`` read straight from a struct column, or None if not one."""
        values = self.columns.get(name)
        for attr in attrs:
            # A null struct has children that look valid; only null-free structs take this path.
            if not isinstance(values, pa.StructArray) or values.null_count or values.type.get_field_index(attr) < 0:
                return None
            values = values.field(attr)
        return to_pylist(values)

    def rows(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """Row dicts restricted to ``names`` (for templates and per-row functions)."""
        cols = [self.pylist(n) for n in names]
        return [dict(zip(names, values, strict=True)) for values in zip(*cols, strict=True)] if cols else [
            {} for _ in range(self.num_rows)]

    def set(self, name: str, values: ColumnValues) -> None:
        self.columns[name] = values
        self._pylists.pop(name, None)


def to_pylist(values: ColumnValues) -> list[Any]:
    """Any column representation as a list of Python objects."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_pylist()  # type: ignore[no-any-return]
    if isinstance(values, np.ndarray):
        return list(values.tolist())
    return list(values)


@dataclass
class EngineContext:
    """What generators of one run share: options, the dataset directory, LLM services, usage."""

    config: DatasetConfig
    run_config: RunConfig
    dataset_dir: Path | None = None  # None for preview (nothing is written)
    llm: Any = None  # gristmill.llm runtime (clients, throttles) shared by a Mill; None without LLM columns
    response_cache: Any = None  # gristmill.llm response cache owned by the dataset or the workflow
    cache_scope: str = ""  # separates cache entries of same-named columns (a workflow's stage name)
    usage: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))


class ColumnGenerator(Protocol):
    """Produces the output columns of one column config for a batch."""

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        """Values for every name in ``column.output_columns()``, each of ``frame.num_rows`` length."""
        ...


GeneratorFactory = Callable[[Any, EngineContext], ColumnGenerator]
_GENERATORS: dict[str, GeneratorFactory] = {}


def register_generator(column_type: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator: the factory building generators for ``column_type`` columns."""

    def decorate(factory: GeneratorFactory) -> GeneratorFactory:
        _GENERATORS[column_type] = factory
        return factory

    return decorate


def build_generator(column: ColumnConfig, context: EngineContext) -> ColumnGenerator:
    """The generator for ``column``; a column type without one is a configuration bug."""
    factory = _GENERATORS.get(column.column_type)
    if factory is None:
        raise KeyError(f"no generator registered for column_type {column.column_type!r}")
    return factory(column, context)
