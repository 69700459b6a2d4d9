"""Validators of ``validation`` columns (``config/validation.py``, ``docs/validation.md``).

==================  =================================================================
module              checks
==================  =================================================================
``python``          ``ast.parse`` and a ruff lint; runs the code only with ``execute``
``sandbox``         the subprocess a snippet runs in (timeout, output cap)
``sql``             sqlglot parse; optionally runs it on a read-only DuckDB/SQLite file
``json_schema``     values against a JSON schema (``llm/schema.py``)
``callable``        a user function over a DataFrame of the chunk
``remote``          POSTs chunks to an HTTP endpoint (``llm/http.py``)
``base``            the verdict struct type and what validators share
==================  =================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gristmill.config.validation import (
    CallableValidatorParams,
    JSONSchemaValidatorParams,
    PythonValidatorParams,
    RemoteValidatorParams,
    SQLValidatorParams,
    ValidationColumn,
    ValidatorParams,
)
from gristmill.engine.validators.base import RESULT_TYPE, Validator
from gristmill.engine.validators.callable import CallableValidator
from gristmill.engine.validators.json_schema import JSONSchemaValidator
from gristmill.engine.validators.python import PythonValidator
from gristmill.engine.validators.remote import RemoteValidator
from gristmill.engine.validators.sql import SQLValidator

_VALIDATORS: dict[type[ValidatorParams], Callable[[ValidationColumn, Any], Validator]] = {
    PythonValidatorParams: PythonValidator,
    SQLValidatorParams: SQLValidator,
    JSONSchemaValidatorParams: JSONSchemaValidator,
    CallableValidatorParams: CallableValidator,
    RemoteValidatorParams: RemoteValidator,
}


def build_validator(column: ValidationColumn) -> Validator:
    """The validator ``column.validator`` names, built from its params (ConfigError if it cannot be)."""
    return _VALIDATORS[type(column.params)](column, column.params)


__all__ = ["RESULT_TYPE", "Validator", "build_validator"]
