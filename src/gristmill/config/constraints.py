"""Constraints on sampler columns, enforced by rejection sampling (``sampling.constraints``).

Violating rows of the target column are redrawn a bounded number of times; a constraint that
still fails is a ``ConstraintError``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from gristmill.config.base import ConfigModel
from gristmill.errors import ConfigError

_OPERATOR_ALIASES = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
Operator = Literal["<", "<=", ">", ">="]


class _InequalityBase(ConfigModel):
    target_column: str = Field(description="The sampler column whose violating rows are redrawn.")
    operator: Operator = Field(description="<, <=, > or >= (lt, le, gt, ge are accepted too).")

    @field_validator("operator", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return _OPERATOR_ALIASES.get(value, value) if isinstance(value, str) else value

    def referenced_columns(self) -> set[str]:
        """Columns the constraint reads."""
        return {self.target_column}


class ScalarInequality(_InequalityBase):
    """``target_column <op> rhs`` for a number ``rhs``, e.g. price > 10."""

    constraint_type: Literal["scalar_inequality"] = "scalar_inequality"
    rhs: float = Field(description="The number the target is compared with.")

    def describe(self) -> str:
        """Human-readable form used in error messages."""
        return f"{self.target_column} {self.operator} {self.rhs:g}"


class ColumnInequality(_InequalityBase):
    """``target_column <op> rhs_column``, e.g. end_date > start_date."""

    constraint_type: Literal["column_inequality"] = "column_inequality"
    rhs_column: str = Field(description="The column the target is compared with (sampler or known column).")

    def describe(self) -> str:
        """Human-readable form used in error messages."""
        return f"{self.target_column} {self.operator} {self.rhs_column}"

    def referenced_columns(self) -> set[str]:
        return {self.target_column, self.rhs_column}


ConstraintModel = ScalarInequality | ColumnInequality  # for type hints; ``Constraint`` for pydantic fields
Constraint = Annotated[ScalarInequality | ColumnInequality, Field(discriminator="constraint_type")]
CONSTRAINT_TYPES: dict[str, type[ScalarInequality] | type[ColumnInequality]] = {
    "scalar_inequality": ScalarInequality,
    "column_inequality": ColumnInequality,
}


def parse_constraint(data: Any) -> ScalarInequality | ColumnInequality:
    """A constraint from a dict (``constraint_type`` picks the model) or a constraint object."""
    if isinstance(data, ScalarInequality | ColumnInequality):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"a constraint must be a mapping, got {type(data).__name__}")
    kind = data.get("constraint_type")
    cls = CONSTRAINT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f"unknown constraint_type {kind!r}; known: {', '.join(CONSTRAINT_TYPES)}")
    return cls.model_validate(data)
