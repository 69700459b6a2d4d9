"""Processors applied to each finished batch table before it is written.

``drop_columns`` (and columns marked ``drop=True``) move data out of the main table into
``dropped-columns/``; ``schema_transform`` builds a JSON-shaped table written under
``processors-files/<name>/``. Neither changes the batch's row count.

Every processor type is registered with its implementation (``config/registry.py``): a factory
``(processor_config) -> ProcessorImplementation`` whose ``apply(table)`` returns a
:class:`ProcessorOutput`: a replacement main table (same rows) and/or a named side table.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, cast

import pyarrow as pa
from jinja2 import Environment, TemplateError, nodes

from gristmill.config.processors import DropColumnsProcessor, ProcessorConfig, SchemaTransformProcessor
from gristmill.config.registry import get_registry, resolve_implementation
from gristmill.engine.templates import render_column
from gristmill.errors import ConfigError, GenerationError

_parser = Environment()  # parsing only; rendering happens in the sandbox of engine.templates


@dataclass
class ProcessedBatch:
    """The main table plus side tables to write beside it."""

    main: pa.Table
    dropped: pa.Table | None = None
    named: dict[str, pa.Table] = field(default_factory=dict)
    dropped_rows: pa.Table | None = None  # rows with a failed cell, under on_failed_rows="drop"


def columns_to_drop(processors: Sequence[ProcessorConfig], column_names: Sequence[str],
                    flagged: Sequence[str] = ()) -> list[str]:
    """Names matched by drop processors (names or glob patterns) plus columns flagged ``drop``."""
    names = list(dict.fromkeys(flagged))
    for proc in processors:
        if isinstance(proc, DropColumnsProcessor):
            for pattern in proc.column_names:
                matched = [c for c in column_names if fnmatch.fnmatchcase(c, pattern)]
                if not matched:
                    raise ConfigError(f"processor {proc.name!r}: {pattern!r} matches no column "
                                      f"(columns: {', '.join(column_names)})")
                names.extend(m for m in matched if m not in names)
    return names


@dataclass(frozen=True)
class ProcessorOutput:
    """What a processor makes of a batch: a new main table (same rows) and/or its own named table."""

    table: pa.Table | None = None  # replaces the main table when given
    named: pa.Table | None = None  # written under processors-files/<processor name>/


class ProcessorImplementation(Protocol):
    """The engine side of a processor type, built once per run from its config."""

    def apply(self, table: pa.Table) -> ProcessorOutput:
        """Process one batch's full table (before dropped columns are split off)."""
        ...


ProcessorFactory = Callable[[ProcessorConfig], ProcessorImplementation]


class DropColumns:
    """``drop_columns``: the split happens in :func:`apply_processors` (see :func:`columns_to_drop`),
    since the dropped data is kept beside the dataset rather than thrown away."""

    def __init__(self, config: DropColumnsProcessor) -> None:
        self.config = config

    def apply(self, table: pa.Table) -> ProcessorOutput:
        return ProcessorOutput()


class SchemaTransform:
    """``schema_transform``: a JSON-shaped table rendered from the processor's template."""

    def __init__(self, config: SchemaTransformProcessor) -> None:
        self.config = config

    def apply(self, table: pa.Table) -> ProcessorOutput:
        return ProcessorOutput(named=schema_transform(table, self.config))


def build_processor(config: ProcessorConfig) -> ProcessorImplementation:
    """The implementation registered for ``config.processor_type``; ConfigError naming the type and the fix."""
    entry = get_registry().processor_type(config.processor_type)
    if entry is None or entry.implementation is None:
        source = entry.source if entry is not None else "nobody"
        raise ConfigError(f"processor type {config.processor_type!r} (registered by {source}) has no "
                          "implementation; register it with registry.add_processor_type(Model, "
                          "implementation='module:attr') in the plugin's register(registry)")
    factory = resolve_implementation(entry.implementation, source=entry.source,
                                     what=f"implementation {entry.implementation!r} of processor type "
                                          f"{config.processor_type!r}")
    if not callable(factory):
        raise ConfigError(f"implementation of processor type {config.processor_type!r} is not callable")
    return cast(ProcessorFactory, factory)(config)


def check_processors(processors: Sequence[ProcessorConfig]) -> None:
    """Resolve every processor's implementation, so a missing one fails before any work."""
    for proc in processors:
        build_processor(proc)


def apply_processors(table: pa.Table, processors: Sequence[ProcessorConfig], drop: Sequence[str]) -> ProcessedBatch:
    """Run every processor in order on the full table, then split off dropped columns."""
    named: dict[str, pa.Table] = {}
    for proc in processors:
        output = build_processor(proc).apply(table)
        if output.table is not None:
            if output.table.num_rows != table.num_rows:
                raise GenerationError(f"processor {proc.name!r} returned {output.table.num_rows} rows for a batch "
                                      f"of {table.num_rows}; a processor must keep the row count")
            table = output.table
        if output.named is not None:
            named[proc.name] = output.named
    dropped = table.select(list(drop)) if drop else None
    main = table.drop_columns(list(drop)) if drop else table
    return ProcessedBatch(main=main, dropped=dropped, named=named)


def schema_transform(table: pa.Table, proc: SchemaTransformProcessor) -> pa.Table:
    """Render the processor's JSON-shaped template for every row of ``table``."""
    n = table.num_rows
    cache: dict[str, list[Any]] = {}

    def column(name: str) -> list[Any]:
        if name not in cache:
            cache[name] = table.column(name).to_pylist()
        return cache[name]

    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, template in proc.template.items():
        try:
            values = _render_value(template, n, column)
        except GenerationError as exc:
            raise GenerationError(f"processor {proc.name!r}, key {key!r}: {exc}") from exc
        for row, value in zip(rows, values, strict=True):
            row[key] = value
    if not rows:
        return pa.table({k: pa.array([], pa.string()) for k in proc.template})
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise GenerationError(f"processor {proc.name!r}: its rows do not fit one table ({exc}); make each "
                              "template leaf render the same kind of value on every row") from None


def _render_value(template: Any, n: int, column: Any) -> list[Any]:
    if isinstance(template, str):
        texts = render_column(template, n, column)
        return [json.loads(text) for text in texts] if _renders_json(template) else texts
    if isinstance(template, dict):
        parts = {k: _render_value(v, n, column) for k, v in template.items()}
        return [{k: parts[k][i] for k in template} for i in range(n)]
    if isinstance(template, list):
        parts_list = [_render_value(v, n, column) for v in template]
        return [[part[i] for part in parts_list] for i in range(n)]
    return [template] * n


@lru_cache(maxsize=256)
def _renders_json(template: str) -> bool:
    """True for a leaf that is one ``{{ ... | tojson }}``: its value keeps its JSON structure.

    Decided from the template, never from the rendered text, so a leaf has one type on every
    row ('[note] text' in one row must not turn into a list in the next)."""
    try:
        body = _parser.parse(template).body
    except TemplateError:
        return False
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return False
    parts = [p for p in body[0].nodes if not (isinstance(p, nodes.TemplateData) and not p.data.strip())]
    return len(parts) == 1 and isinstance(parts[0], nodes.Filter) and parts[0].name == "tojson"
