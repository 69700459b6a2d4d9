"""A JSON-schema validator for the keywords structured outputs use.

Covers ``type`` (incl. lists), ``properties``, ``required``, ``additionalProperties``,
``items``, ``minItems``/``maxItems``, ``enum``, ``const``, ``minimum``/``maximum``,
``exclusiveMinimum``/``exclusiveMaximum``, ``minLength``/``maxLength``, ``pattern``,
``anyOf``/``oneOf``/``allOf`` and local ``$ref`` (``#/$defs/...``, as pydantic emits).
Unknown keywords are ignored, as the spec says. Errors read like
``$.address.zip: expected string, got integer`` so they can be sent back to the model.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for name in ("integer", "number", "string", "object", "array", "null"):
        if isinstance(value, _TYPES[name]):
            return name
    return type(value).__name__


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def validate(value: Any, schema: dict[str, Any]) -> list[str]:
    """Every violation of ``schema`` by ``value`` (empty when valid)."""
    errors: list[str] = []
    _check(value, schema, "$", schema.get("$defs", schema.get("definitions", {})), errors)
    return errors


def _check(value: Any, schema: dict[str, Any], path: str, defs: dict[str, Any], errors: list[str]) -> None:
    if "$ref" in schema:
        schema = {**defs.get(schema["$ref"].rsplit("/", 1)[-1], {}),
                  **{k: v for k, v in schema.items() if k != "$ref"}}
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is_type(value, k) for k in kinds):
            errors.append(f"{path}: expected {' or '.join(kinds)}, got {_type_name(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")
    _check_combinators(value, schema, path, defs, errors)
    if isinstance(value, dict):
        _check_object(value, schema, path, defs, errors)
    elif isinstance(value, list):
        _check_array(value, schema, path, defs, errors)
    elif isinstance(value, str):
        _check_string(value, schema, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, path, errors)


def _check_combinators(value: Any, schema: dict[str, Any], path: str, defs: dict[str, Any],
                       errors: list[str]) -> None:
    for sub in schema.get("allOf", []):
        _check(value, sub, path, defs, errors)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options and not any(not validate_sub(value, sub, defs) for sub in options):
            errors.append(f"{path}: matches none of the allowed shapes ({key})")


def validate_sub(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    _check(value, schema, "$", defs, errors)
    return errors


def _check_object(value: dict[str, Any], schema: dict[str, Any], path: str, defs: dict[str, Any],
                  errors: list[str]) -> None:
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            errors.append(f"{path}: missing required property {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            _check(item, props[name], f"{path}.{name}", defs, errors)
        elif extra is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(extra, dict):
            _check(item, extra, f"{path}.{name}", defs, errors)


def _check_array(value: list[Any], schema: dict[str, Any], path: str, defs: dict[str, Any],
                 errors: list[str]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: needs at least {schema['minItems']} items, got {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: allows at most {schema['maxItems']} items, got {len(value)}")
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _check(item, items, f"{path}[{i}]", defs, errors)


def _check_string(value: str, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: does not match pattern {schema['pattern']!r}")


def _check_number(value: float, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    bounds: tuple[tuple[str, Callable[[float, float], bool], str], ...] = (
        ("minimum", operator.ge, ">="), ("maximum", operator.le, "<="),
        ("exclusiveMinimum", operator.gt, ">"), ("exclusiveMaximum", operator.lt, "<"))
    for key, ok, sign in bounds:
        bound = schema.get(key)
        if isinstance(bound, int | float) and not isinstance(bound, bool) and not ok(value, bound):
            errors.append(f"{path}: must be {sign} {bound}, got {value}")
