"""Column configs, and the column-type part of the registry (``config/registry.py``).

A column type is a pydantic model with a ``column_type`` literal, registered together with its
generator, once::

    get_registry().add_column_type(ShoutColumn, generator="my_pkg.gen:ShoutGenerator")

``DatasetConfig`` parses a column dict by looking its ``column_type`` up in the registry (loading
plugins on a miss); the engine builds the generator from the same entry. The built-in types
register in ``config/builtins.py``, the way a plugin does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, cast, overload

from jinja2 import Environment, TemplateError, meta
from pydantic import Field, field_serializer, field_validator

from gristmill.config.base import (
    ConfigModel,
    check_function_field,
    function_reference,
    resolve_function,
)
from gristmill.config.registry import Implementation, get_registry
from gristmill.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_jinja_env = Environment()
# Names a template cannot reference as a column: Jinja reads them as constants, operators or globals.
_RESERVED_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is",
                             "if", "else", *_jinja_env.globals})

C = TypeVar("C", bound="type[ColumnConfig]")
# Base fields added after datasets were written, with their defaults (see ``fingerprint_payload``).
_LATER_FIELDS: dict[str, Any] = {"skip": None, "propagate_skip": True}


@overload
def register_column_type(cls: C, /) -> C: ...
@overload
def register_column_type(*, generator: Implementation | None = None) -> Callable[[C], C]: ...


def register_column_type(cls: C | None = None, /, *, generator: Implementation | None = None) -> C | Callable[[C], C]:
    """Class decorator: make ``cls`` parseable from ``{"column_type": <its literal>, ...}`` and pair it
    with its generator (``"module:attr"`` or a callable ``(column, context) -> generator``).

    >>> @register_column_type(generator="my_pkg.gen:ShoutGenerator")  # doctest: +SKIP
    ... class ShoutColumn(ColumnConfig):
    ...     column_type: Literal["shout"] = "shout"
    """

    def decorate(model: C) -> C:
        get_registry().add_column_type(model, generator=generator)
        return model

    return decorate(cls) if cls is not None else decorate


def column_types() -> dict[str, type[ColumnConfig]]:
    """Registered column types by name (plugins included)."""
    return {name: cast(type[ColumnConfig], entry.model) for name, entry in get_registry().column_types().items()}


def parse_column(data: Any) -> ColumnConfig:
    """Turn a dict (from YAML/JSON or keyword arguments) or a column object into a column config."""
    if isinstance(data, ColumnConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"a column must be a mapping or a column object, got {type(data).__name__}")
    kind = data.get("column_type")
    if kind is None:
        raise ConfigError(f"column {data.get('name')!r}: 'column_type' is required "
                          f"(one of {', '.join(sorted(column_types()))})")
    entry = get_registry().column_type(kind) if isinstance(kind, str) else None
    if entry is None:
        raise ConfigError(f"column {data.get('name')!r}: unknown column_type {kind!r}; "
                          f"known types: {', '.join(sorted(column_types()))} (a plugin's type needs its "
                          "package installed in this environment)")
    return cast(ColumnConfig, entry.model.model_validate(data))  # a subclass: checked at registration


def template_variables(template: str) -> set[str]:
    """Top-level names a Jinja template reads (``{{ a.b }}`` reads ``a``)."""
    try:
        # find_undeclared_variables compiles the template, which is where an unknown filter shows.
        names = meta.find_undeclared_variables(_jinja_env.parse(template))
    except TemplateError as exc:  # syntax errors, unknown filters or tests: user input
        raise ConfigError(f"invalid Jinja template {template!r}: {exc}") from exc
    except RecursionError:  # Jinja's parser recurses once per nesting level: '((((...))))'
        shown = template if len(template) <= 60 else f"{template[:60]}... ({len(template)} characters)"
        raise ConfigError(f"template {shown!r} is nested too deeply to parse; flatten its parentheses, "
                          "brackets or blocks") from None
    # Jinja's own globals (range, dict, namespace...) are not columns.
    return set(names) - set(_jinja_env.globals)


def skip_template(condition: str) -> str:
    """A ``skip`` condition as a template rendering 'True' or 'False': a bare Jinja expression
    (``score < 3``) is wrapped; one written as ``{{ ... }}`` is used as it is."""
    return condition if "{{" in condition or "{%" in condition else f"{{{{ ({condition}) }}}}"


class ColumnConfig(ConfigModel):
    """Base of every column type."""

    name: str = Field(description="Column name; a valid identifier so templates can reference it.")
    column_type: str = Field(description="Discriminator naming the registered column type.")
    drop: bool = Field(default=False, description="Generate the column but drop it from the final dataset.")
    skip: str | None = Field(default=None, description=(
        "A Jinja condition over the row, e.g. \"difficulty == 'easy'\" or \"{{ score < 3 }}\": where it holds, "
        "the cell is not generated (and not paid for) and holds null."))
    propagate_skip: bool = Field(default=True, description=(
        "Skip this column's cell (null, not generated, not paid) where a column it reads was skipped or "
        "failed. A cell skipped because of a failure is listed in the row's __errors."))

    # Fields that never enter the fingerprint (secrets, timeouts, concurrency...).
    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset()
    # True for types whose cells can fail for good (an LLM that gives up, user code that raises,
    # a validator that cannot answer): a config with one gets the per-row ``__errors`` column.
    may_fail: ClassVar[bool] = False

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"column name {value!r} must be an identifier (letters, digits, _; not starting "
                             "with a digit) so templates can reference it")
        if value in _RESERVED_NAMES:
            raise ValueError(f"column name {value!r} is reserved by Jinja templates; choose another name")
        return value

    @field_validator("skip")
    @classmethod
    def _check_skip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("skip must be a non-empty Jinja condition, e.g. \"difficulty == 'easy'\"")
        try:
            template_variables(skip_template(value))
        except ConfigError as exc:
            raise ValueError(f"skip: {exc}") from None
        return value

    def required_columns(self) -> set[str]:
        """Columns this column reads; the engine orders generation by them."""
        return set()

    def skip_columns(self) -> set[str]:
        """Columns the ``skip`` condition reads."""
        return template_variables(skip_template(self.skip)) if self.skip else set()

    def dependencies(self) -> set[str]:
        """Everything that must exist before this column is generated: what it reads and what its
        ``skip`` condition reads."""
        return self.required_columns() | self.skip_columns()

    def output_columns(self) -> list[str]:
        """Columns this column writes (its own name, plus side columns such as reasoning traces)."""
        return [self.name]

    def model_aliases(self) -> set[str]:
        """Model aliases this column calls (LLM columns); used for static checks and cache ownership."""
        return set()

    def check_ready(self) -> None:
        """Checks that need more than the fields (an importable function); the engine runs them
        before any work, so a problem is a ConfigError now rather than at batch 0."""

    def fingerprint_payload(self) -> Any:
        return self.model_dump(mode="json", exclude=self._fingerprint_excluded())

    def _fingerprint_excluded(self) -> set[str]:
        # Fields added after datasets were written enter the fingerprint only when set, so a
        # stored dataset keeps its fingerprint when gristmill learns a new option.
        later = {name for name, default in _LATER_FIELDS.items() if getattr(self, name) == default}
        return set(self.fingerprint_exclude) | later


class ExpressionColumn(ColumnConfig):
    """A Jinja2 template rendered per row in a sandbox, optionally cast to a dtype."""

    column_type: Literal["expression"] = "expression"
    expr: str = Field(description="Jinja2 template over the row, e.g. '{{ first_name }} {{ last_name }}'.")
    dtype: Literal["str", "int", "float", "bool"] = Field(default="str", description="Type to cast the result to.")

    @field_validator("expr")
    @classmethod
    def _check_expr(cls, value: str) -> str:
        try:
            template_variables(value)
        except ConfigError as exc:  # a ValueError lets pydantic name the column and field
            raise ValueError(str(exc)) from None
        return value

    def required_columns(self) -> set[str]:
        return template_variables(self.expr)


class CustomColumn(ColumnConfig):
    """A Python function that computes one or more columns, per row or per batch.

    ``mode="row"``: ``fn(row: dict) -> value`` (or a dict of the ``writes`` columns).
    ``mode="batch"``: ``fn(df: pandas.DataFrame) -> DataFrame | dict[str, sequence] | sequence``.
    Identified in the fingerprint by module, qualname and ``version``: bump ``version``
    when the function's output changes. A ``'module:qualname'`` string resolves only from a
    module the user allows (``config/trust.py``, ``docs/trust.md``); a callable always works.
    """

    column_type: Literal["custom"] = "custom"
    may_fail: ClassVar[bool] = True  # a row function that raises fails its cell
    function: Any = Field(description="A callable, or 'module:qualname' of one.")
    mode: Literal["row", "batch"] = Field(default="row", description="Call per row or once per batch.")
    reads: list[str] = Field(default_factory=list, description="Columns the function reads.")
    writes: list[str] = Field(default_factory=list,
                              description="Columns the function writes; defaults to [name].")
    version: str | None = Field(default=None, description="Bump when the function's output changes.")

    @field_validator("function")
    @classmethod
    def _check_function(cls, value: Any) -> Any:
        return check_function_field(value)

    def resolve(self) -> Callable[..., Any]:
        """The callable itself, importing it when given by name."""
        return resolve_function(self.function, self.name)

    def check_ready(self) -> None:
        self.resolve()

    def function_ref(self) -> str:
        """'module:qualname' of the function, for the fingerprint and config.json."""
        return function_reference(self.function)

    def required_columns(self) -> set[str]:
        return set(self.reads)

    def output_columns(self) -> list[str]:
        return list(self.writes) if self.writes else [self.name]

    def fingerprint_payload(self) -> Any:
        return self.model_dump(mode="json", exclude=self._fingerprint_excluded())

    @field_serializer("function")
    def _serialize_function(self, value: Any) -> str:
        return self.function_ref()
