"""Processors: transformations run on every batch after its columns are generated.

A processor must keep the batch's row count; changing the number of rows is a workflow
stage boundary (an ``on_success`` callback), not a processor's job.

A processor type is a ``ProcessorConfig`` subclass with a ``processor_type`` literal, registered
with its engine implementation (``registry.add_processor_type(Model, implementation="mod:attr")``,
see ``config/registry.py``); ``DatasetConfig`` parses ``processors`` items through
:func:`parse_processor`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from pydantic import Field, field_validator

from gristmill.config.base import ConfigModel
from gristmill.config.columns import template_variables
from gristmill.config.registry import get_registry
from gristmill.errors import ConfigError

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class ProcessorConfig(ConfigModel):
    """Base of processors: a name (also its directory under ``processors-files/``)."""

    name: str = Field(description="Processor name; used as a directory name.")
    processor_type: str = Field(description="Discriminator.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not value or value in {".", ".."} or not set(value) <= _NAME_CHARS:
            raise ValueError(f"processor name {value!r} must be non-empty and use only letters, digits, '_', '-', '.'")
        return value

    def required_columns(self) -> set[str]:
        """Columns the processor reads; static checks catch a missing one before any work."""
        return set()


class DropColumnsProcessor(ProcessorConfig):
    """Drop columns (names or glob patterns) from the dataset; the dropped data is kept
    under the dataset's ``dropped-columns/``."""

    processor_type: Literal["drop_columns"] = "drop_columns"
    column_names: list[str] = Field(min_length=1, description="Column names or glob patterns ('tmp_*').")

    def required_columns(self) -> set[str]:
        """Plain names (not patterns) must be columns; static checks catch a typo before any work."""
        return {name for name in self.column_names if not any(ch in name for ch in "*?[")}


class SchemaTransformProcessor(ProcessorConfig):
    """Build a new JSON-shaped dataset under ``processors-files/<name>/`` from Jinja templates.

    ``template`` is any JSON-like structure whose string leaves are Jinja templates over the
    row, e.g. ``{"messages": [{"role": "user", "content": "{{ question }}"}]}``.
    """

    processor_type: Literal["schema_transform"] = "schema_transform"
    template: dict[str, Any] = Field(description="JSON-shaped output; string leaves are Jinja templates.")

    template_leaf_types: ClassVar[tuple[type, ...]] = (str,)

    def required_columns(self) -> set[str]:
        names: set[str] = set()
        _collect_template_vars(self.template, names)
        return names


def _collect_template_vars(value: Any, names: set[str]) -> None:
    if isinstance(value, str):
        names |= template_variables(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_template_vars(item, names)
    elif isinstance(value, list):
        for item in value:
            _collect_template_vars(item, names)


# The built-in processors: what a workflow stage's ``output_processors`` accept.
Processor = DropColumnsProcessor | SchemaTransformProcessor


def processor_types() -> dict[str, type[ProcessorConfig]]:
    """Registered processor types by name (plugins included)."""
    return {name: cast(type[ProcessorConfig], entry.model) for name, entry in get_registry().processor_types().items()}


def parse_processor(data: Any) -> ProcessorConfig:
    """A processor config from a dict (``processor_type`` picks the registered model) or an object."""
    if isinstance(data, ProcessorConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"a processor must be a mapping or a processor object, got {type(data).__name__}")
    kind = data.get("processor_type")
    entry = get_registry().processor_type(kind) if isinstance(kind, str) else None
    if entry is None:
        raise ConfigError(f"processor {data.get('name')!r}: unknown processor_type {kind!r}; known types: "
                          f"{', '.join(sorted(processor_types()))} (a plugin's type needs its package installed)")
    return cast(ProcessorConfig, entry.model.model_validate(data))  # a subclass: checked at registration
