"""The ``json_schema`` validator: each target value must match the column's JSON schema.

Uses gristmill's own validator (``llm/schema.py``, the one ``llm_structured`` answers go
through) rather than ``jsonschema``, which is no dependency; schemas using keywords it does not
check are refused when the config is read (``config/validation.py``), so nothing passes silently.
"""

from __future__ import annotations

import json
from typing import Any

from gristmill.config.validation import JSONSchemaValidatorParams, ValidationColumn
from gristmill.engine.validators.base import Chunk, Message, Outcome, verdict_of
from gristmill.llm.schema import validate


class JSONSchemaValidator:
    max_parallel = 1

    def __init__(self, column: ValidationColumn, params: JSONSchemaValidatorParams) -> None:
        self.schema = params.load_schema(column.name)
        self.parse_strings = params.parse_strings

    async def validate(self, chunk: Chunk) -> list[Outcome]:
        # Cheap per value: no thread needed.
        return [verdict_of([m for target in chunk.targets for m in self._check(target, values[target])])
                for values in chunk.values]

    def _check(self, target: str, value: Any) -> list[Message]:
        if self.parse_strings and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                return [Message(target, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno, "json")]
        return [Message(target, error, code="schema") for error in validate(value, self.schema)]
