"""Validation columns: check other columns' values and write one verdict struct per row.

::

    - name: sql_check
      column_type: validation
      target_columns: [sql]
      validator: sql
      params: {dialect: sqlite, database: shop.sqlite, require_rows: true}

``params`` is validated by the model :data:`VALIDATOR_PARAMS` registers for ``validator``
(errors name the column and the field). Each params model carries ``output_version``, which
enters the fingerprint (bumped when that validator's verdicts change), and its own
``fingerprint_exclude`` (timeouts, retries, parallelism, the remote endpoint). The engine side
is ``gristmill.engine.validators``; the user guide is ``docs/validation.md``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_serializer, field_validator, model_validator

from gristmill.config.base import (
    ConfigModel,
    check_function_field,
    function_reference,
    resolve_function,
)
from gristmill.config.columns import ColumnConfig
from gristmill.config.json_schema import schema_problems
from gristmill.errors import ConfigError

EXTRA_HINT = "install it with: pip install 'gristmill[validators]'"
# The flake8 "will it run" set: syntax errors, invalid comparisons, misplaced statements, undefined names.
DEFAULT_RUFF_SELECT = ("E9", "F63", "F7", "F82")
# Assertion keywords ``llm/schema.validate`` does not check: a schema using one would pass values it
# should refuse, so such a schema is refused at config time instead.
UNCHECKED_SCHEMA_KEYWORDS = ("not", "if", "then", "else", "patternProperties", "propertyNames", "dependentRequired",
                             "dependentSchemas", "uniqueItems", "multipleOf", "minProperties", "maxProperties",
                             "contains", "minContains", "maxContains", "prefixItems", "unevaluatedProperties",
                             "unevaluatedItems")


class ValidatorParams(ConfigModel):
    """Base of the params models; ``output_version`` enters the fingerprint."""

    output_version: ClassVar[int] = 1
    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset()

    def fingerprint_payload(self) -> Any:
        return self.model_dump(mode="json", exclude=set(self.fingerprint_exclude))

    def check_ready(self, column: str) -> None:
        """Checks that need the environment (files, binaries, imports); raise ConfigError."""


class PythonValidatorParams(ValidatorParams):
    """``ast.parse`` and a ruff lint of every snippet; optionally run each one in a subprocess."""

    ruff_select: list[str] = Field(default_factory=lambda: list(DEFAULT_RUFF_SELECT), min_length=1,
                                   description="Ruff rule codes or prefixes that make a snippet invalid.")
    execute: bool = Field(default=False, description=(
        "Also run each snippet that parses and lints clean (`python -I` in an empty temporary directory); "
        "a non-zero exit, a timeout or too much output makes it invalid. Runs code: opt in only for "
        "code you are willing to run on this machine."))
    timeout: float = Field(default=10.0, gt=0, le=3600, description="Seconds a snippet may run (execute: true).")
    max_output_bytes: int = Field(default=100_000, ge=1_000, le=100_000_000, description=(
        "Output (stdout and stderr) a snippet may print before it is stopped and judged invalid."))

    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset({"timeout"})

    def check_ready(self, column: str) -> None:
        binary = ruff_binary()
        if binary is None:
            raise ConfigError(f"column {column!r}: the python validator needs the ruff binary; {EXTRA_HINT}")
        # Only ruff knows its rule codes: lint nothing once, so a typo fails now and not on every batch.
        done = subprocess.run([binary, "check", "--isolated", "--no-cache", "--exit-zero", "--select",
                               ",".join(self.ruff_select), "-"], input="", capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            cause = (done.stderr.strip().splitlines() or ["no message"])[-1].strip()
            raise ConfigError(f"column {column!r}: params.ruff_select {self.ruff_select} is not accepted by "
                              f"ruff ({cause}); use rule codes or prefixes such as 'F821' or 'E9'")


class SQLValidatorParams(ValidatorParams):
    """Parse with sqlglot for ``dialect``; optionally run against a read-only database."""

    dialect: str = Field(description="sqlglot dialect name: sqlite, duckdb, postgres, mysql, bigquery, ...")
    database: str | None = Field(default=None, description=(
        "Path of a DuckDB or SQLite database to run each statement against (read-only). Its content is "
        "not fingerprinted: bump `version` after changing the data."))
    engine: Literal["duckdb", "sqlite"] | None = Field(default=None, description=(
        "Database engine; inferred from a .duckdb, .sqlite or .sqlite3 suffix, required otherwise."))
    require_rows: bool = Field(default=False, description="A statement that runs but returns no rows is invalid.")
    timeout: float = Field(default=10.0, gt=0, le=3600, description="Seconds a statement may run.")
    version: str | None = Field(default=None, description="Bump when the database's data changes.")

    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset({"timeout"})
    # The folder of the config file this came from (set by DatasetConfig.from_yaml / from_json).
    _config_dir: str | None = PrivateAttr(default=None)

    def database_path(self) -> Path | None:
        """The database file. A relative path means relative to the config file's folder, as a
        seed path does, unless it names a file from the working directory; ``database`` keeps
        the path as written, so the fingerprint does not depend on where the config was loaded."""
        if self.database is None:
            return None
        path = Path(self.database).expanduser()
        if not path.is_absolute() and not path.exists() and self._config_dir is not None:
            candidate = Path(self._config_dir) / path
            if candidate.exists():
                return candidate
        return path

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        known = sql_dialects()
        if value not in known:
            raise ValueError(f"unknown SQL dialect {value!r}; known dialects: {', '.join(d for d in known if d)}")
        return value

    @model_validator(mode="after")
    def _infer_engine(self) -> SQLValidatorParams:
        if self.database is None:
            if self.engine is not None or self.require_rows:
                raise ValueError("engine and require_rows need a database to run the SQL against; set database")
            return self
        if self.engine is None:
            suffix = Path(self.database).suffix.lower()
            engine = {".duckdb": "duckdb", ".sqlite": "sqlite", ".sqlite3": "sqlite"}.get(suffix)
            if engine is None:
                raise ValueError(f"database {self.database!r}: its suffix does not say which engine; set "
                                 "engine: duckdb or engine: sqlite")
            object.__setattr__(self, "engine", engine)  # bypass validate_assignment, which would recurse
        return self

    def check_ready(self, column: str) -> None:
        path = self.database_path()
        if path is None:
            return
        if not path.is_file():
            where = f"{path.resolve().parent}" + (f" and {self._config_dir}" if self._config_dir is not None else "")
            raise ConfigError(f"column {column!r}: database {self.database!r} does not exist (looked in {where}); "
                              "fix the path in params.database")
        if self.engine == "duckdb":
            _require_module("duckdb", column)


class JSONSchemaValidatorParams(ValidatorParams):
    """Each target value (a dict, list or scalar, or a JSON string) must match a JSON schema."""

    json_schema: dict[str, Any] | None = Field(default=None, description="The JSON schema, inline.")
    schema_file: str | None = Field(default=None, description=(
        "Path of a JSON file holding the schema (instead of json_schema); its content is fingerprinted."))
    parse_strings: bool = Field(default=True, description=(
        "Parse a string value as JSON before validating it (a string that is not JSON is invalid)."))

    @field_validator("json_schema")
    @classmethod
    def _check_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_json_schema(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> JSONSchemaValidatorParams:
        if (self.json_schema is None) == (self.schema_file is None):
            raise ValueError("give exactly one of json_schema (inline) and schema_file (a path)")
        return self

    def load_schema(self, column: str) -> dict[str, Any]:
        """The schema, read from ``schema_file`` when it is given there."""
        if self.json_schema is not None:
            return self.json_schema
        path = Path(str(self.schema_file))
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"column {column!r}: cannot read schema_file {str(path)!r}: {exc}") from None
        if not isinstance(schema, dict):
            raise ConfigError(f"column {column!r}: schema_file {str(path)!r} must hold a JSON object")
        try:
            _check_json_schema(schema)
        except ValueError as exc:
            raise ConfigError(f"column {column!r}: schema_file {str(path)!r}: {exc}") from None
        return schema

    def check_ready(self, column: str) -> None:
        self.load_schema(column)

    def fingerprint_payload(self) -> Any:
        payload = super().fingerprint_payload()
        if self.schema_file is not None:
            # A schema edited in place changes verdicts; a moved one with the same content does not.
            try:
                payload["schema_file"] = hashlib.sha256(Path(self.schema_file).read_bytes()).hexdigest()
            except OSError:
                pass  # check_ready reports the missing file
        return payload


class CallableValidatorParams(ValidatorParams):
    """A user function over a batch DataFrame of the target columns (see ``docs/validation.md``).

    Identified in the fingerprint by 'module:qualname' and ``version``, like a custom column; a
    'module:qualname' string resolves only from modules the user allows (``config/trust.py``).
    """

    function: Any = Field(description="A callable df -> bools (or a DataFrame/dict with is_valid), or "
                                      "'module:qualname' of one.")
    version: str | None = Field(default=None, description="Bump when the function's verdicts change.")

    @field_validator("function")
    @classmethod
    def _check_function(cls, value: Any) -> Any:
        return check_function_field(value)

    def resolve(self, column: str) -> Callable[..., Any]:
        """The callable itself, importing it when given by name (only from an allowed module)."""
        return resolve_function(self.function, column)

    def check_ready(self, column: str) -> None:
        self.resolve(column)

    @field_serializer("function")
    def _serialize_function(self, value: Any) -> str:
        return function_reference(value)


class RemoteValidatorParams(ValidatorParams):
    """POST batches of rows as JSON to ``url``; the request/response format is in ``docs/validation.md``.

    The endpoint is not fingerprinted (like a model's): bump ``version`` when the service's verdicts change.
    """

    url: str = Field(description="http:// or https:// URL the batches are POSTed to.")
    version: str | None = Field(default=None, description="Bump when the service's verdicts change.")
    timeout: float = Field(default=30.0, gt=0, le=3600, description="Seconds before a request is abandoned.")
    max_retries: int = Field(default=3, ge=0, le=20, description=(
        "Retries of a request after connection errors, timeouts, 5xx or 429 answers."))
    retry_backoff: float = Field(default=0.5, ge=0, le=60, description="Seconds before the first retry; doubles.")
    max_parallel: int = Field(default=4, ge=1, le=256, description="Requests in flight at once.")

    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset(
        {"url", "timeout", "max_retries", "retry_backoff", "max_parallel"})

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1].strip("/")) == 0:
            raise ValueError(f"url {value!r} must be an http:// or https:// URL")
        return value


VALIDATOR_PARAMS: dict[str, type[ValidatorParams]] = {
    "python": PythonValidatorParams,
    "sql": SQLValidatorParams,
    "json_schema": JSONSchemaValidatorParams,
    "callable": CallableValidatorParams,
    "remote": RemoteValidatorParams,
}
ValidatorName = Literal["python", "sql", "json_schema", "callable", "remote"]
AnyValidatorParams = (PythonValidatorParams | SQLValidatorParams | JSONSchemaValidatorParams | CallableValidatorParams
                      | RemoteValidatorParams)


class ValidationColumn(ColumnConfig):
    """Checks ``target_columns`` with a validator and writes one struct per row: ``is_valid``,
    ``messages`` (target, message, line, code), ``score`` and ``rows`` (see ``docs/validation.md``).

    A row whose value is wrong is a verdict (``is_valid`` false); a cell the validator could not
    judge (the endpoint never answered, the database could not be opened) fails and is null.
    """

    column_type: Literal["validation"] = "validation"
    target_columns: list[str] = Field(min_length=1, description="Columns to validate; a row is valid when all are.")
    validator: ValidatorName = Field(description="python, sql, json_schema, callable or remote.")
    params: AnyValidatorParams = Field(default=None, description=(  # type: ignore[assignment]
        "Params of the validator (see docs/validation.md); the validator's defaults when left out."))
    batch_size: int = Field(default=50, ge=1, le=10_000, description="Rows per validator call (ruff run, request).")

    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset({"batch_size"})
    may_fail: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _parse_params(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("validator")
        params_cls = VALIDATOR_PARAMS.get(kind) if isinstance(kind, str) else None
        if params_cls is None:
            raise ValueError(f"unknown validator {kind!r}; known validators: {', '.join(sorted(VALIDATOR_PARAMS))}")
        params = data.get("params")
        if isinstance(params, params_cls):
            return data
        if isinstance(params, ConfigModel):
            params = params.model_dump()
        if params is not None and not isinstance(params, dict):
            raise ValueError(f"params must be a mapping, got {type(params).__name__}")
        try:
            return {**data, "params": params_cls.model_validate(params or {})}
        except ValidationError as exc:
            problems = "; ".join(_describe(err) for err in exc.errors())
            raise ValueError(f"{problems} ({kind} validator)") from None

    @field_validator("target_columns")
    @classmethod
    def _unique_targets(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"target_columns lists a column twice: {value}")
        return value

    def required_columns(self) -> set[str]:
        return set(self.target_columns)

    def check_ready(self) -> None:
        self.params.check_ready(self.name)

    def fingerprint_payload(self) -> Any:
        payload = self.model_dump(mode="json", exclude=self._fingerprint_excluded())
        payload["params"] = self.params.fingerprint_payload()
        payload["validator_version"] = self.params.output_version
        return payload


def _describe(err: Any) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(['params', *(str(part) for part in err['loc'])])}: {message}"


def _check_json_schema(schema: dict[str, Any]) -> None:
    problems = schema_problems(schema)
    unchecked = sorted({key for key in _keywords(schema) if key in UNCHECKED_SCHEMA_KEYWORDS})
    if unchecked:
        problems.append(f"keyword(s) {', '.join(unchecked)} are not checked by gristmill's validator, so values "
                        "violating them would pass; express the rule another way or use a callable validator")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"not a usable JSON schema: {'; '.join(problems[:3])}{more}")


def _keywords(schema: Any) -> set[str]:
    """Every key used as a keyword anywhere in ``schema`` (property names excluded)."""
    if isinstance(schema, list):
        return {key for item in schema for key in _keywords(item)}
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions"):
            if isinstance(value, dict):
                found |= {k for member in value.values() for k in _keywords(member)}
        elif key not in ("enum", "const", "default", "examples", "required"):
            found |= _keywords(value)
    return found


def sql_dialects() -> list[str]:
    """sqlglot's dialect names (the empty name is its generic dialect); ValueError without sqlglot."""
    try:
        from sqlglot.dialects.dialect import Dialect, Dialects
    except ImportError:
        raise ValueError(f"the sql validator needs sqlglot; {EXTRA_HINT}") from None
    return sorted({d.value for d in Dialects} | set(Dialect.classes))


def ruff_binary() -> str | None:
    """Path of the ruff executable: the one the ``ruff`` wheel installed, else one on PATH."""
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return shutil.which("ruff")
    try:
        return str(find_ruff_bin())
    except FileNotFoundError:
        return shutil.which("ruff")


def _require_module(name: str, column: str) -> None:
    try:
        __import__(name)
    except ImportError:
        raise ConfigError(f"column {column!r}: the sql validator needs {name}; {EXTRA_HINT}") from None
