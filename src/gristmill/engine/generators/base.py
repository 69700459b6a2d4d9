"""Column generators: how a column type produces values for one batch.

Each column type is registered once, in ``config/registry.py``, with its config model and its
generator factory (a ``"module:attr"`` reference resolved here, on first use). The batch builder
only calls ``await generator.generate(frame)``; it knows nothing about samplers, templates or
LLMs, which is what lets new column types plug in.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeVar, cast, runtime_checkable

import numpy as np
import pyarrow as pa

from gristmill.config.columns import ColumnConfig
from gristmill.config.dataset import DatasetConfig
from gristmill.config.registry import get_registry, resolve_implementation
from gristmill.config.run import RunConfig
from gristmill.engine.progress import CellProgress, NullProgress
from gristmill.engine.sandbox import TemplateLimits
from gristmill.engine.templates import render_column
from gristmill.errors import ConfigError, ModelError

T = TypeVar("T")

if TYPE_CHECKING:
    from gristmill.llm.cache import ResponseCache
    from gristmill.llm.runtime import LLMRuntime, ModelHandle

ColumnValues: TypeAlias = np.ndarray | pa.Array | pa.ChunkedArray | Sequence[Any]


@dataclass(frozen=True)
class CellProblem:
    """One entry of a row's ``__errors`` list: a cell that ``failed`` for good, a cell ``skipped``
    because it reads a failed one (both are what ``retry_failed`` regenerates), or, under
    ``target_valid_records``, a row ``rejected`` by the gate or moved out as ``surplus``."""

    column: str
    kind: Literal["failed", "skipped", "rejected", "surplus"]
    reason: str
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "reason": self.reason, "attempts": self.attempts}


@dataclass
class BatchFrame:
    """The columns of one batch built so far, in generation order.

    While a generator runs, ``active`` says which of the batch's rows it must produce values for
    (None: all of them); the others are skipped (a ``skip`` condition held, they read a failed
    cell, or a retry leaves them as they are) and their values are ignored. A generator that
    gives up on a cell calls :meth:`fail`; the cell's value is then None.
    """

    batch_index: int
    row_offset: int  # dataset-wide index of the batch's first row
    num_rows: int
    run_seed: int
    columns: dict[str, ColumnValues] = field(default_factory=dict)
    _pylists: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    active: np.ndarray | None = None  # bool per row, set by the batch builder around each generator
    current: str = ""  # the column being generated
    problems: dict[int, list[CellProblem]] = field(default_factory=dict)  # batch row -> its failed/skipped cells

    def active_rows(self) -> list[int]:
        """Batch-local indices of the rows the current generator must produce values for."""
        if self.active is None:
            return list(range(self.num_rows))
        return [int(i) for i in np.flatnonzero(self.active)]

    def fail(self, row: int, reason: str, attempts: int = 1) -> None:
        """Record that the current column's cell in batch row ``row`` failed for good."""
        self.problems.setdefault(row, []).append(CellProblem(self.current, "failed", reason, attempts))

    def pylist(self, name: str) -> list[Any]:
        """Column values as Python objects (structs as dicts), converted once per batch."""
        cached = self._pylists.get(name)
        if cached is None:
            cached = to_pylist(self.columns[name])
            self._pylists[name] = cached
        return cached

    def render(self, template: str, rows: Sequence[int], limits: TemplateLimits) -> list[str]:
        """``template`` rendered for batch rows ``rows`` (reading only those rows' cells: others may
        be skipped and hold nulls); errors name the dataset row."""
        every = len(rows) == self.num_rows

        def column(name: str) -> list[Any]:
            values = self.pylist(name)
            return values if every else [values[i] for i in rows]

        return render_column(template, len(rows), column, self.nested if every else None,
                             row_offset=[self.row_offset + i for i in rows], limits=limits)

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


class ErrorWindow:
    """The outcomes of the last ``size`` cells; trips when the failed share exceeds ``max_rate``."""

    def __init__(self, max_rate: float, size: int) -> None:
        self.max_rate = max_rate
        self.outcomes: deque[bool] = deque(maxlen=size)
        self.failures = 0
        self.last_error = ""

    def record(self, ok: bool, error: str = "") -> bool:
        """Record a cell; True when the window is full and its failed share is too high."""
        if len(self.outcomes) == self.outcomes.maxlen and not self.outcomes[0]:
            self.failures -= 1
        self.outcomes.append(ok)
        self.failures += not ok
        if not ok:
            self.last_error = error
        return len(self.outcomes) == self.outcomes.maxlen and self.tripped()

    def tripped(self) -> bool:
        """The failed share of the cells seen (at most ``size``) exceeds ``max_rate``: checked when
        a batch ends, so a run smaller than the window stops too."""
        return bool(self.outcomes) and self.failures > self.max_rate * len(self.outcomes)


@dataclass
class EngineContext:
    """What generators of one run share: options, the dataset directory, LLM services, usage."""

    config: DatasetConfig
    run_config: RunConfig
    dataset_dir: Path | None = None  # None for preview (nothing is written)
    llm: LLMRuntime | None = None  # clients and throttles shared by a Mill; None without LLM columns
    response_cache: ResponseCache | None = None  # owned by the dataset or the workflow
    cache_scope: str = ""  # separates cache entries of same-named columns (a workflow's stage name)
    usage: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    progress: CellProgress = field(default_factory=NullProgress)  # the run's progress line, told of each cell


class ModelColumnGenerator:
    """What every generator of a column that calls a model sets up the same way: the model (of the
    ``generation_type`` the column needs), the response cache (None when caching is off) with the
    column's name in it (scoped by the workflow stage), usage counters, progress and the error window."""

    generation_type: str = "chat"

    def __init__(self, column: Any, context: EngineContext) -> None:
        if context.llm is None:
            raise ModelError(f"column {column.name!r} needs a model, but the run has no LLM runtime")
        handle = context.llm.model(column.model_alias, context.config.models)
        kind = handle.resolved.model.generation_type
        if kind != self.generation_type:
            raise ConfigError(f"column {column.name!r}: model alias {column.model_alias!r} is a {kind} model; "
                              f"{_a_column_of(column)} needs a model declared with generation_type: "
                              f"{self.generation_type}")
        self.handle: ModelHandle = handle
        self.llm: LLMRuntime = context.llm
        self.cache: ResponseCache | None = context.response_cache if context.run_config.cache else None
        self.cache_column = f"{context.cache_scope}/{column.name}" if context.cache_scope else column.name
        self.usage = context.usage[column.model_alias]
        self.progress = context.progress
        self.errors = ErrorWindow(context.run_config.max_error_rate, context.run_config.error_window)
        self.previewing = context.dataset_dir is None  # preview writes nothing: no resume to suggest


def _a_column_of(column: Any) -> str:
    kind = str(column.column_type)
    if kind.startswith("llm_"):
        return "an LLM column"
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} column"


async def gather_or_cancel(tasks: Sequence[asyncio.Future[T]]) -> list[T]:
    """The results of ``tasks``; when one fails (or the caller is cancelled) the others are
    cancelled and awaited first, so no request outlives its batch."""
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class ColumnGenerator(Protocol):
    """Produces the output columns of one column config for a batch."""

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        """Values for every name in ``column.output_columns()``, each of ``frame.num_rows`` length."""
        ...


GeneratorFactory = Callable[[Any, EngineContext], ColumnGenerator]


@runtime_checkable
class GroupGeneratorFactory(Protocol):
    """A generator factory that builds ONE generator for every column of its type in a config.

    For types whose columns must be drawn together (samplers: constraints span columns). Group
    generators run before per-column generators, so ``check_group`` must make sure their columns
    read only each other and seed columns.
    """

    @classmethod
    def check_group(cls, columns: Sequence[Any], config: DatasetConfig, seed_columns: Sequence[str]) -> None:
        """Static checks of the group; raises ConfigError."""

    @classmethod
    def build_group(cls, columns: Sequence[Any], config: DatasetConfig, context: EngineContext) -> ColumnGenerator:
        """The generator of the whole group."""
        ...


def register_generator(column_type: str) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator kept for older code: pair an already registered column type with ``factory``.

    New code registers both at once: ``registry.add_column_type(Model, generator=factory)``.
    """

    def decorate(factory: GeneratorFactory) -> GeneratorFactory:
        registry = get_registry()
        entry = registry.column_type(column_type)
        if entry is None:
            raise ConfigError(f"register_generator({column_type!r}): no such column type; register its model "
                              f"with registry.add_column_type(Model, generator=...) instead")
        registry.add_column_type(entry.model, generator=factory, replace=True)
        return factory

    return decorate


def generator_factory(column_type: str) -> GeneratorFactory | GroupGeneratorFactory:
    """The generator factory registered for ``column_type``; ConfigError naming the type and the fix."""
    entry = get_registry().column_type(column_type)
    if entry is None:
        raise ConfigError(f"unknown column_type {column_type!r}; install the plugin that provides it")
    if entry.generator is None:
        raise ConfigError(f"column type {column_type!r} ({entry.model.__name__}, registered by {entry.source}) has "
                          "no generator; register it with registry.add_column_type(Model, "
                          "generator='module:attr') in the plugin's register(registry)")
    factory: object = entry.generator
    if isinstance(factory, str):
        factory = resolve_implementation(factory, what=f"generator {factory!r} of column type {column_type!r}",
                                         source=entry.source)
    if not callable(factory) and not isinstance(factory, GroupGeneratorFactory):
        raise ConfigError(f"generator of column type {column_type!r} ({entry.source}) is {factory!r}, not a "
                          "callable (column, context) -> generator")
    return cast(GeneratorFactory | GroupGeneratorFactory, factory)


def is_group_factory(factory: object) -> bool:
    """True for a factory building one generator per column type (see ``GroupGeneratorFactory``)."""
    return isinstance(factory, GroupGeneratorFactory)


def build_generator(column: ColumnConfig, context: EngineContext) -> ColumnGenerator:
    """The generator of one column (a group type's generator built for this column alone)."""
    factory = generator_factory(column.column_type)
    if isinstance(factory, GroupGeneratorFactory):
        return factory.build_group([column], context.config, context)
    return factory(column, context)
