"""Shared base for every user-facing config model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gristmill.config.errors_format import config_error
from gristmill.config.trust import check_reference
from gristmill.errors import ConfigError


class ConfigValidationError(ConfigError, ValidationError):
    """What building a config model with invalid values raises: a ``ConfigError`` whose text is
    one line naming each bad field, and still pydantic's ``ValidationError`` (with ``errors()``),
    so code written against either keeps working."""

    message: str = ""

    @classmethod
    def of(cls, exc: ValidationError, model: type[BaseModel]) -> ConfigValidationError:
        """The one-line error for ``exc``, raised while validating ``model``."""
        error = cls.from_exception_data(exc.title, exc.errors())  # type: ignore[arg-type]
        error.message = str(config_error(exc, source=model.__name__))
        return error

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigModel(BaseModel):
    """Base of user-written configuration: unknown fields are errors, values are validated on
    assignment, and infinities and NaN are never valid numbers."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True,
                              allow_inf_nan=False)

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; a bad value is one ``ConfigError`` naming the field, as users of
        ``RunConfig(batch_size=0)`` expect, instead of pydantic's multi-line report."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigValidationError.of(exc, type(self)) from None

    # Marked as pydantic's own __init__ so that nested validation and model_validate() never call
    # it: a custom __init__ would run for every nested model, and a ConfigError (not a ValueError)
    # raised there would escape pydantic's error collection and its union matching. Only direct
    # construction converts; internal model_validate() callers still get locations to prefix.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def fingerprint_payload(self) -> Any:
        """The data-relevant part of this model, as JSON-able data (see ``config.fingerprint``)."""
        return self.model_dump(mode="json", exclude_none=False)


def non_empty_alias(value: str) -> str:
    """The field validator of an ``alias`` (models, tool configs): not empty or blank."""
    if not value.strip():
        raise ValueError("alias must not be empty")
    return value


def import_reference(reference: str) -> Any:
    """The object a 'module:qualname' reference names; ImportError/AttributeError if none.

    Every reference goes through here, so every caller gets the trust check: a module the user
    has not allowed is a ``ConfigError`` saying how to allow it, raised before it is imported
    (``config/trust.py``, ``docs/trust.md``)."""
    import importlib

    check_reference(reference)
    module_name, _, qualname = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def check_function_field(value: Any) -> Any:
    """A config field holding a function: a callable, or a 'module:qualname' string (ValueError
    otherwise, for pydantic to name the field)."""
    if isinstance(value, str):
        if ":" not in value:
            raise ValueError(f"function {value!r} must be 'module:qualname'")
        return value
    if not callable(value):
        raise ValueError("function must be a callable or a 'module:qualname' string")
    return value


def resolve_function(function: Any, column: str) -> Callable[..., Any]:
    """The callable of a function field, importing it when given by name (only from an allowed
    module); ConfigError naming the column otherwise."""
    if callable(function):
        return function  # type: ignore[no-any-return]
    try:
        obj = import_reference(str(function))
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"column {column!r}: cannot import function {function!r}: {exc}") from exc
    except ConfigError as exc:  # a module the user has not allowed (config/trust.py)
        raise ConfigError(f"column {column!r}: {exc}") from None
    if not callable(obj):
        raise ConfigError(f"column {column!r}: {function!r} is not callable")
    return obj  # type: ignore[no-any-return]


def function_reference(function: Any) -> str:
    """'module:qualname' of a function field's value, for fingerprints and config files."""
    if isinstance(function, str):
        return function
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"
