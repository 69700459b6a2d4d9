"""A structural check of the JSON schemas users write (``llm_structured.output_format``).

``jsonschema`` is not a dependency, and the validator that checks answers (``llm/schema.py``)
assumes a well-formed schema: it ignores what it does not understand, so ``{"type": "objekt"}``
or a ``required`` list naming no property would accept or refuse every answer, after the run has
paid for them. This module finds such mistakes at config time. It checks the keywords that
validator uses, plus the common ones whose value has a fixed shape; unknown keywords are
allowed, as the JSON Schema spec says.

>>> schema_problems({"type": "object", "properties": {"age": {"type": "int"}}})
["$.properties.age.type: unknown type 'int' (known: array, boolean, integer, null, number, object, string)"]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
_ONE_SCHEMA = ("additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
               "additionalItems", "unevaluatedProperties", "unevaluatedItems")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
           "minContains", "maxContains")
_NUMBERS = ("minimum", "maximum", "multipleOf")
_LOCAL_REF = re.compile(r"^#/(\$defs|definitions)/([^/]+)$")


def schema_problems(schema: Any) -> list[str]:
    """Every structural problem of ``schema``, as '$.where: what' (empty when it looks valid)."""
    problems: list[str] = []
    _check(schema, "$", schema if isinstance(schema, dict) else {}, problems)
    return problems


def _check(schema: Any, path: str, root: dict[str, Any], problems: list[str]) -> None:
    if isinstance(schema, bool):  # true / false are schemas too (anything / nothing)
        return
    if not isinstance(schema, dict):
        problems.append(f"{path}: a schema must be a mapping or true/false, got {type(schema).__name__}")
        return
    for check in _CHECKS:
        check(schema, path, root, problems)


def _check_type(schema: dict[str, Any], path: str, root: dict[str, Any], problems: list[str]) -> None:
    if "type" not in schema:
        return
    kinds = schema["type"]
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds:
        problems.append(f"{path}.type: must be a type name or a non-empty list of them")
        return
    for kind in kinds:
        if kind not in TYPES:
            problems.append(f"{path}.type: unknown type {kind!r} (known: {', '.join(TYPES)})")


def _check_subschemas(schema: dict[str, Any], path: str, root: dict[str, Any], problems: list[str]) -> None:
    for key in _ONE_SCHEMA:
        if key in schema:
            _check(schema[key], f"{path}.{key}", root, problems)
    items = schema.get("items")
    if isinstance(items, list):  # the older tuple form: one schema per position
        for index, item in enumerate(items):
            _check(item, f"{path}.items[{index}]", root, problems)
    elif "items" in schema:
        _check(items, f"{path}.items", root, problems)
    for key in _SCHEMA_LISTS:
        if key in schema:
            options = schema[key]
            if not isinstance(options, list) or not options:
                problems.append(f"{path}.{key}: must be a non-empty list of schemas")
                continue
            for index, option in enumerate(options):
                _check(option, f"{path}.{key}[{index}]", root, problems)


def _check_schema_maps(schema: dict[str, Any], path: str, root: dict[str, Any], problems: list[str]) -> None:
    for key in _SCHEMA_MAPS:
        if key not in schema:
            continue
        members = schema[key]
        if not isinstance(members, dict):
            problems.append(f"{path}.{key}: must be a mapping of name to schema, got {type(members).__name__}")
            continue
        for name, member in members.items():
            _check(member, f"{path}.{key}.{name}", root, problems)


def _check_required(schema: dict[str, Any], path: str, root: dict[str, Any], problems: list[str]) -> None:
    if "required" not in schema:
        return
    required = schema["required"]
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        problems.append(f"{path}.required: must be a list of property names, got {required!r}")
        return
    properties = schema.get("properties")
    if isinstance(properties, dict):
        # Allowed by the spec, but in an output schema almost always a typo: no answer could name it.
        for name in required:
            if name not in properties:
                problems.append(f"{path}.required: {name!r} is not in properties ({', '.join(properties)})")


def _check_values(schema: dict[str, Any], path: str, root: dict[str, Any], problems: list[str]) -> None:
    for key in _COUNTS:
        value = schema.get(key)
        if key in schema and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append(f"{path}.{key}: must be a non-negative integer, got {value!r}")
    for key in (*_NUMBERS, "exclusiveMinimum", "exclusiveMaximum"):
        value = schema.get(key)
        # An older draft spells exclusiveMinimum/Maximum as booleans; both forms are valid.
        boolean_ok = key.startswith("exclusive") and isinstance(value, bool)
        if key in schema and not boolean_ok and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{path}.{key}: must be a number, got {value!r}")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        problems.append(f"{path}.enum: must be a non-empty list of allowed values")


def _check_pattern(schema: dict[str, Any], path: str, root: dict[str, Any], problems: list[str]) -> None:
    if "pattern" not in schema:
        return
    pattern = schema["pattern"]
    try:
        re.compile(pattern)
    except (re.error, TypeError) as exc:
        problems.append(f"{path}.pattern: not a valid regular expression ({exc})")


def _check_ref(schema: dict[str, Any], path: str, root: dict[str, Any], problems: list[str]) -> None:
    if "$ref" not in schema:
        return
    ref = schema["$ref"]
    if ref == "#":
        return
    match = _LOCAL_REF.match(ref) if isinstance(ref, str) else None
    if match is None:
        problems.append(f"{path}.$ref: {ref!r} is not supported; use a local reference like '#/$defs/Name'")
        return
    definitions = root.get(match[1])
    if not isinstance(definitions, dict) or match[2] not in definitions:
        problems.append(f"{path}.$ref: {ref!r} names no definition in the schema's {match[1]}")


_CHECKS: tuple[Callable[[dict[str, Any], str, dict[str, Any], list[str]], None], ...] = (
    _check_type, _check_subschemas, _check_schema_maps, _check_required, _check_values, _check_pattern, _check_ref)
