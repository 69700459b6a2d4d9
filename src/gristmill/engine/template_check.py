"""Static check of ``{{ column.field }}`` against the fields a struct column really has.

Jinja renders a missing field as an empty string, so ``{{ who.firstname }}`` on a person column
would write (and pay for) a whole dataset of prompts with a hole in them. The fields of a
person record, a validation verdict and a judge's scores are known before any row is drawn,
so every template of a config (expressions, prompts, ``skip`` conditions, schema transforms)
is checked against them, and the error lists the real fields.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gristmill.config.columns import ColumnConfig, ExpressionColumn, skip_template
from gristmill.config.dataset import DatasetConfig
from gristmill.config.llm_columns import LLMColumnBase, LLMJudgeColumn
from gristmill.config.processors import SchemaTransformProcessor
from gristmill.config.samplers import SamplerColumn
from gristmill.config.validation import ValidationColumn
from gristmill.errors import ConfigError

_env = ImmutableSandboxedEnvironment()
# ``who.items()`` or ``who.get('x')`` read the record as a mapping: methods, not fields.
_MAPPING_METHODS = frozenset(dir(dict))


@dataclass(frozen=True)
class StructShape:
    """The fields of one struct column and what kind of column it is (for the message)."""

    kind: str
    fields: tuple[str, ...]


def check_struct_fields(config: DatasetConfig) -> None:
    """ConfigError naming the template, the field and the real fields when a template reads a
    field that a struct column of ``config`` does not have."""
    shapes = struct_shapes(config)
    if not shapes:
        return
    for where, template in _templates(config):
        for name, field in _field_reads(template):
            shape = shapes.get(name)
            if shape is not None and field not in shape.fields:
                raise ConfigError(_message(where, name, field, shape))


def struct_shapes(config: DatasetConfig) -> dict[str, StructShape]:
    """The struct columns of ``config`` whose fields are known before generation, by name."""
    shapes: dict[str, StructShape] = {}
    for column in config.columns:
        if isinstance(column, SamplerColumn) and column.sampler_type == "person":
            shapes[column.name] = StructShape("a person column", _person_fields())
        elif isinstance(column, ValidationColumn):
            shapes[column.name] = StructShape("a validation column (its verdict)", _verdict_fields())
        elif isinstance(column, LLMJudgeColumn):
            shapes[column.name] = StructShape("an llm_judge column (one entry per score)",
                                              tuple(score.name for score in column.scores))
    return shapes


def _person_fields() -> tuple[str, ...]:
    # Read when checked, never copied: the person sampler gains fields over time.
    from gristmill.sampling import PERSON_FIELDS

    return tuple(PERSON_FIELDS)


def _verdict_fields() -> tuple[str, ...]:
    from gristmill.engine.validators.base import RESULT_TYPE

    return tuple(field.name for field in RESULT_TYPE)


def _templates(config: DatasetConfig) -> Iterator[tuple[str, str]]:
    """(where, template) for every Jinja template of ``config``."""
    for column in config.columns:
        yield from _column_templates(column)
    for processor in config.processors:
        if isinstance(processor, SchemaTransformProcessor):
            for text in _string_leaves(processor.template):
                yield f"processor {processor.name!r}", text


def _column_templates(column: ColumnConfig) -> Iterator[tuple[str, str]]:
    if isinstance(column, ExpressionColumn):
        yield f"column {column.name!r}", column.expr
    if isinstance(column, LLMColumnBase):
        yield f"the prompt of column {column.name!r}", column.prompt
        if column.system_prompt:
            yield f"the system prompt of column {column.name!r}", column.system_prompt
    if column.skip:
        yield f"the skip condition of column {column.name!r}", skip_template(column.skip)


def _string_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _string_leaves(item)


def _field_reads(template: str) -> Iterator[tuple[str, str]]:
    """(column, field) for every ``column.field`` / ``column['field']`` the template reads of a
    name it does not bind itself (a loop variable may shadow a column)."""
    try:
        tree = _env.parse(template)
    except TemplateError:
        return  # reported, with its position, by the column's own validation and by rendering
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        read = _read_of(node)
        if read is not None and read[0] not in bound and read[1] not in _MAPPING_METHODS:
            yield read


def _read_of(node: nodes.Node) -> tuple[str, str] | None:
    """(name, field) of ``name.field`` or ``name['field']``; None for anything else."""
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return node.node.name, node.attr
    if (isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)):
        return node.node.name, node.arg.value
    return None


def _message(where: str, name: str, field: str, shape: StructShape) -> str:
    close = difflib.get_close_matches(field, shape.fields, n=1)
    hint = f"did you mean {name}.{close[0]}? " if close else ""
    return (f"{where} reads {name}.{field}, but {name!r} is {shape.kind} with no field {field!r}; {hint}"
            f"its fields: {', '.join(shape.fields)}")
