"""Sampler columns: one params model per sampler type, their registry, and constraints.

A sampler column draws its values from a seeded random stream, vectorised per batch::

    SamplerColumn(name="price", sampler_type="uniform",
                  params={"low": 1, "high": 100, "decimal_places": 2},
                  conditional_params={"category == 'books'": {"low": 5, "high": 30}})

``params`` is validated by the model registered for ``sampler_type`` in :data:`SAMPLER_PARAMS`
(``config/sampler_params.py``; distribution names in ``config/distributions.py``).

``conditional_params`` maps a condition on another column to params *overrides*: rows where
the condition holds are drawn with the base params updated by the override (fields the
override leaves out keep their base value). A condition reads ``<column> == <literal>``,
``<column> != <literal>``, ``<column> in [<literals>]``, ``<column> not in [<literals>]`` or a
comparison ``<column> > <literal>`` (also ``>=``, ``<``, ``<=``: a number, or an ISO date for a
datetime column), where the literal is a Python literal (``'books'``, ``3``, ``True``). The
column is usually another sampler column (a category, an age), or a column the engine already
knows (a seed column).
When several conditions hold for a row, the first one in the mapping wins, so the order of
``conditional_params`` is part of the fingerprint (:meth:`SamplerColumn.fingerprint_payload`).

Category values are all strings, all booleans or all numbers (ints and floats may mix; the
column is then float). A ``subcategory`` maps parent values to lists; its keys are strings
(YAML ``1:`` or ``true:`` keys are turned into ``"1"`` and ``"True"``). A parent value selects
the key equal to ``str(value)`` or, for a number, the key naming the same number (``"1"`` or
``"1.0"`` for 1.0) or, for a boolean, ``"true"``/``"false"`` in any case. A parent value with no
key is a config error when the columns are validated.

``convert_to`` changes the type of the written values: ``int``, ``float`` or ``str`` for
numeric and category samplers, a strftime format (``'%Y-%m-%d'``) or ``str`` (ISO 8601) for
datetime and timedelta samplers. It applies last: conditions, constraints and timedelta
references read the drawn values.

Constraints (:class:`ScalarInequality`, :class:`ColumnInequality`) live in ``config/constraints.py``;
every public name of the three modules stays importable from here.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, SerializeAsAny, ValidationError, model_validator

from gristmill.config.base import ConfigModel
from gristmill.config.columns import ColumnConfig
from gristmill.config.constraints import (
    CONSTRAINT_TYPES,
    ColumnInequality,
    Constraint,
    ConstraintModel,
    Operator,
    ScalarInequality,
    parse_constraint,
)
from gristmill.config.distributions import (
    NUMPY_DISTRIBUTIONS,
    SCIPY_DISTRIBUTIONS,
    SCIPY_HINT,
    check_distribution,
    check_scipy_distribution,
)
from gristmill.config.sampler_params import (
    MAX_AGE,
    MAX_DECIMAL_PLACES,
    MAX_POISSON_MEAN,
    PERSON_FIELDS,
    SAMPLER_PARAMS,
    BernoulliMixtureParams,
    BernoulliParams,
    BinomialParams,
    CategoryParams,
    DatetimeParams,
    GaussianParams,
    PersonParams,
    PoissonParams,
    SamplerParams,
    Scalar,
    ScipyParams,
    SubcategoryParams,
    TimedeltaParams,
    UniformParams,
    UUIDParams,
    register_sampler_params,
    subcategory_key,
    value_kind,
)

# ---------------------------------------------------------------------------------------------- conditions

_CONDITION_RE = re.compile(
    r"^\s*(?P<column>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?:(?P<eq>==|!=|>=|<=|>|<)|\s(?P<member>not\s+in|in)\s)\s*(?P<value>.+?)\s*$")
ORDERING_OPERATORS = frozenset({">", ">=", "<", "<="})


@dataclass(frozen=True)
class Condition:
    """A parsed ``conditional_params`` key: ``column operator value``."""

    column: str
    operator: Literal["==", "!=", ">", ">=", "<", "<=", "in", "not in"]
    value: Any  # a literal; a tuple of literals for in / not in


def parse_condition(text: str) -> Condition:
    """Parse ``"category == 'books'"``, ``"age > 21"`` or ``"category in ['a', 'b']"``; ValueError when
    malformed."""
    match = _CONDITION_RE.match(text)
    if match is None:
        raise ValueError(f"condition {text!r} must read '<column> == <literal>', '<column> != <literal>', "
                         "'<column> > <number>' (or >=, <, <=), '<column> in [<literals>]' or "
                         "'<column> not in [<literals>]'")
    try:
        value = ast.literal_eval(match["value"])
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"condition {text!r}: {match['value']!r} is not a Python literal "
                         "(quote strings: category == 'books')") from exc
    if match["eq"] in ORDERING_OPERATORS and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        raise ValueError(f"condition {text!r}: {match['eq']} compares with a number (age > 21) or, for a "
                         f"datetime column, an ISO date ('2024-06-01'), not {value!r}")
    if match["eq"]:
        return Condition(match["column"], match["eq"], value)  # type: ignore[arg-type]
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"condition {text!r}: 'in' needs a list, e.g. category in ['a', 'b']")
    operator = "not in" if match["member"].startswith("not") else "in"
    return Condition(match["column"], operator, tuple(value))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the column

DATETIME_SAMPLERS = frozenset({"datetime", "timedelta"})
CONVERSIONS = ("int", "float", "str")

def _as_params_dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, ConfigModel):
        return value.model_dump()
    if isinstance(value, dict):
        return value
    raise ValueError(f"{where} must be a mapping, got {type(value).__name__}")


def _describe_error(err: Any, path: str) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    field = ".".join([path, *(str(part) for part in err["loc"])])
    return f"{field}: {message}"


def _validate_params(cls: type[SamplerParams], data: dict[str, Any], path: str, where: str) -> SamplerParams:
    # Messages start with the field's path below the column ("params.low: ..."), which
    # config_error folds into the location ("columns[1].params.low: ...").
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe_error(err, path) for err in exc.errors())
        raise ValueError(f"{problems} ({where})") from None


def _check_numeric_values(all_params: list[SamplerParams], target: str) -> None:
    values = [v for params in all_params for v in _category_values(params)]
    bad = [v for v in values if not _is_number(v)]
    if bad:
        raise ValueError(f"convert_to {target!r}: values {bad[:6]} are not numbers; use convert_to 'str' or "
                         "give numeric values")


def _category_values(params: SamplerParams) -> list[Scalar]:
    if isinstance(params, SubcategoryParams):
        return [v for options in params.values.values() for v in options]
    return list(params.values) if isinstance(params, CategoryParams) else []


def _is_number(value: Scalar) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


class SamplerColumn(ColumnConfig):
    """A column drawn by a vectorised sampler (see the module docstring for conditions)."""

    column_type: Literal["sampler"] = "sampler"
    sampler_type: str = Field(description="A name in SAMPLER_PARAMS: uniform, category, person, ...")
    params: SerializeAsAny[SamplerParams] = Field(description="Params of the sampler type.")
    conditional_params: dict[str, SerializeAsAny[SamplerParams]] = Field(default_factory=dict, description=(
        "Condition ('category == \"books\"', 'age > 21') -> params overrides for the rows where it holds."))
    convert_to: str | None = Field(default=None, description=(
        "Type of the written values: 'int', 'float' or 'str' for numeric and category samplers; a strftime "
        "format ('%Y-%m-%d') or 'str' (ISO 8601) for datetime and timedelta samplers. Conditions, "
        "constraints and timedelta references read the values as drawn."))

    @model_validator(mode="before")
    @classmethod
    def _parse_params(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("sampler_type")
        params_cls = SAMPLER_PARAMS.get(kind) if isinstance(kind, str) else None
        if params_cls is None:
            raise ValueError(f"unknown sampler_type {kind!r}; known sampler types: "
                             f"{', '.join(sorted(SAMPLER_PARAMS))}")
        where = f"{kind} sampler {data.get('name')!r}"
        base = _as_params_dict(data.get("params"), "params")
        conditional = data.get("conditional_params") or {}
        if not isinstance(conditional, dict):
            raise ValueError(f"{where}: conditional_params must map conditions to params overrides")
        out = dict(data)
        out["params"] = _validate_params(params_cls, base, "params", where)
        out["conditional_params"] = {
            cond: _validate_params(params_cls, {**base, **_as_params_dict(override, f"conditional_params[{cond!r}]")},
                                   f"conditional_params[{cond!r}]", where)
            for cond, override in conditional.items()
        }
        return out

    @model_validator(mode="after")
    def _check_conditions(self) -> SamplerColumn:
        for text in self.conditional_params:
            if parse_condition(text).column == self.name:
                raise ValueError(f"condition {text!r} of column {self.name!r} reads the column itself")
        if isinstance(self.params, CategoryParams | SubcategoryParams):
            # One column, one type: int values under one condition and strings under another
            # would make an object column that parquet cannot store.
            kinds = {text: params.value_kind() for text, params in self.conditional_params.items()  # type: ignore[attr-defined]
                     if params.value_kind() != self.params.value_kind()}  # type: ignore[attr-defined]
            if kinds:
                text, kind = next(iter(kinds.items()))
                raise ValueError(f"conditional_params[{text!r}] gives {kind} values but params gives "
                                 f"{self.params.value_kind()} values; a column has one type")
        return self

    @model_validator(mode="after")
    def _check_convert_to(self) -> SamplerColumn:
        target = self.convert_to
        if target is None:
            return self
        kind = self.sampler_type
        if kind == "person":
            raise ValueError("convert_to does not apply to a person sampler (a struct of fields); read a field "
                             "in an expression column instead, e.g. expr: '{{ person.age }}', dtype: str")
        if kind in DATETIME_SAMPLERS:
            if target != "str" and "%" not in target:
                raise ValueError(f"convert_to of a {kind} sampler is a strftime format such as '%Y-%m-%d', "
                                 f"or 'str' for ISO 8601; got {target!r}")
            return self
        if target not in CONVERSIONS or (kind == "uuid" and target != "str"):
            allowed = "'str'" if kind == "uuid" else "'int', 'float' or 'str'"
            raise ValueError(f"convert_to of a {kind} sampler must be {allowed}, got {target!r} (strftime "
                             "formats apply to datetime and timedelta samplers)")
        if target != "str" and isinstance(self.params, CategoryParams | SubcategoryParams):
            _check_numeric_values(self.all_params(), target)
        return self

    def conditions(self) -> list[tuple[Condition, SamplerParams]]:
        """The parsed conditions with their (merged) params, in priority order."""
        return [(parse_condition(text), params) for text, params in self.conditional_params.items()]

    def all_params(self) -> list[SamplerParams]:
        """The base params, then the (merged) params of every condition."""
        return [self.params, *self.conditional_params.values()]

    def fingerprint_payload(self) -> Any:
        """Like every column's, but ``conditional_params`` is an ordered list of ``[condition, params]``
        pairs: the first matching condition wins, so reordering them changes the data (and canonical
        JSON sorts the keys of a mapping)."""
        payload = super().fingerprint_payload()
        payload["conditional_params"] = [[text, params.model_dump(mode="json")]
                                         for text, params in self.conditional_params.items()]
        if self.convert_to is None:  # added later: stored datasets keep their fingerprint
            del payload["convert_to"]
        if self.sampler_type == "person":  # the struct's shape: a stored dataset with other fields starts fresh
            payload["person_fields"] = list(PERSON_FIELDS)
        return payload

    def required_columns(self) -> set[str]:
        needed = set(self.params.referenced_columns())
        for condition, params in self.conditions():
            needed.add(condition.column)
            needed |= params.referenced_columns()
        return needed


__all__ = [
    "CONSTRAINT_TYPES",
    "CONVERSIONS",
    "DATETIME_SAMPLERS",
    "MAX_AGE",
    "MAX_DECIMAL_PLACES",
    "MAX_POISSON_MEAN",
    "NUMPY_DISTRIBUTIONS",
    "ORDERING_OPERATORS",
    "PERSON_FIELDS",
    "SAMPLER_PARAMS",
    "SCIPY_DISTRIBUTIONS",
    "SCIPY_HINT",
    "BernoulliMixtureParams",
    "BernoulliParams",
    "BinomialParams",
    "CategoryParams",
    "ColumnInequality",
    "Condition",
    "Constraint",
    "ConstraintModel",
    "DatetimeParams",
    "GaussianParams",
    "Operator",
    "PersonParams",
    "PoissonParams",
    "SamplerColumn",
    "SamplerParams",
    "Scalar",
    "ScalarInequality",
    "ScipyParams",
    "SubcategoryParams",
    "TimedeltaParams",
    "UUIDParams",
    "UniformParams",
    "check_distribution",
    "check_scipy_distribution",
    "parse_condition",
    "parse_constraint",
    "register_sampler_params",
    "subcategory_key",
    "value_kind",
]
