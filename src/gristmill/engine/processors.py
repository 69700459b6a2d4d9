"""Processors applied to each finished batch table before it is written.

``drop_columns`` (and columns marked ``drop=True``) move data out of the main table into
``dropped-columns/``; ``schema_transform`` builds a JSON-shaped table written under
``processors-files/<name>/``. Neither changes the batch's row count.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pyarrow as pa
from jinja2 import Environment, TemplateError, nodes

from gristmill.config.processors import DropColumnsProcessor, Processor, SchemaTransformProcessor
from gristmill.engine.templates import render_column
from gristmill.errors import ConfigError, GenerationError

_parser = Environment()  # parsing only; rendering happens in the sandbox of engine.templates


@dataclass
class ProcessedBatch:
    """The main table plus side tables to write beside it."""

    main: pa.Table
    dropped: pa.Table | None = None
    named: dict[str, pa.Table] = field(default_factory=dict)


def columns_to_drop(processors: Sequence[Processor], column_names: Sequence[str],
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


def apply_processors(table: pa.Table, processors: Sequence[Processor], drop: Sequence[str]) -> ProcessedBatch:
    """Run schema transforms on the full table, then split off dropped columns."""
    named: dict[str, pa.Table] = {}
    for proc in processors:
        if isinstance(proc, SchemaTransformProcessor):
            named[proc.name] = schema_transform(table, proc)
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
