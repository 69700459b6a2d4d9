"""The ``sql`` validator: parse with sqlglot for the declared dialect; optionally run each
statement against a read-only DuckDB or SQLite database (one connection per chunk) to check that
it runs within ``timeout`` and, with ``require_rows``, returns rows."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gristmill.config.validation import EXTRA_HINT, SQLValidatorParams, ValidationColumn
from gristmill.engine.validators.base import CellFailure, Chunk, Message, Outcome, code_problem, strip_fence, verdict_of
from gristmill.errors import ConfigError

FETCH_SIZE = 1_000


class StatementError(Exception):
    """A statement did not run: its message and code go into the verdict."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# Runs one SQL text and returns how many rows it gave; raises StatementError.
RunSQL = Callable[[str], int]


class SQLValidator:
    max_parallel = 1

    def __init__(self, column: ValidationColumn, params: SQLValidatorParams) -> None:
        try:
            import sqlglot
        except ImportError:
            raise ConfigError(f"column {column.name!r}: the sql validator needs sqlglot; {EXTRA_HINT}") from None
        self.sqlglot = sqlglot
        self.params = params

    async def validate(self, chunk: Chunk) -> list[Outcome]:
        # Parsing is CPU work and queries block: off the event loop.
        return await asyncio.to_thread(self._validate, chunk)

    def _validate(self, chunk: Chunk) -> list[Outcome]:
        found: list[list[Message]] = [[] for _ in range(len(chunk))]
        parsed: list[tuple[int, str, str, int]] = []  # row, target, sql, line offset
        for row, values in enumerate(chunk.values):
            for target in chunk.targets:
                sql, offset, problems = self._parse(target, values[target])
                found[row].extend(problems)
                if not problems:
                    parsed.append((row, target, sql, offset))
        if self.params.database is None:
            return [verdict_of(messages) for messages in found]
        rows: list[int | None] = [None] * len(chunk)
        try:
            with self._connect() as run:
                for row, target, sql, _ in parsed:
                    count, problem = self._run(run, target, sql)
                    if count is not None:
                        rows[row] = (rows[row] or 0) + count
                    if problem is not None:
                        found[row].append(problem)
        except StatementError as exc:  # the database itself could not be opened
            return [CellFailure(str(exc)) for _ in range(len(chunk))]
        return [verdict_of(messages, rows=count) for messages, count in zip(found, rows, strict=True)]

    def _parse(self, target: str, value: Any) -> tuple[str, int, list[Message]]:
        problem = code_problem(target, value, "SQL")
        if problem is not None:
            return "", 0, [problem]
        sql, offset = strip_fence(value)
        try:
            parsed = self.sqlglot.parse(sql, read=self.params.dialect, error_level=self.sqlglot.ErrorLevel.RAISE)
            statements = [s for s in parsed if s is not None]
        except self.sqlglot.errors.SqlglotError as exc:
            return sql, offset, _parse_messages(target, exc, offset)
        if not statements:
            return sql, offset, [Message(target, "no SQL statement", code="empty")]
        return sql, offset, []

    def _run(self, run: RunSQL, target: str, sql: str) -> tuple[int | None, Message | None]:
        """Rows the SQL returned (None when it did not run) and the problem, if any."""
        try:
            count = run(sql)
        except StatementError as exc:
            return None, Message(target, str(exc), code=exc.code)
        if self.params.require_rows and count == 0:
            return 0, Message(target, "the query returned no rows", code="no-rows")
        return count, None

    @contextmanager
    def _connect(self) -> Iterator[RunSQL]:
        path = self.params.database_path()
        assert path is not None  # only called with a database
        if self.params.engine == "duckdb":
            with _duckdb(path, self.params.timeout) as run:
                yield run
        else:
            with _sqlite(path, self.params.timeout) as run:
                yield run


def _parse_messages(target: str, exc: Exception, offset: int) -> list[Message]:
    errors = getattr(exc, "errors", None) or []
    if not errors:  # a tokenizer error carries only text
        return [Message(target, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, code="parse-error")]
    return [Message(target, str(error.get("description", "")), _line(error.get("line"), offset), "parse-error")
            for error in errors[:1]]  # sqlglot's follow-up errors repeat the first one


def _line(value: Any, offset: int) -> int | None:
    return value + offset if isinstance(value, int) and not isinstance(value, bool) else None


@contextmanager
def _sqlite(path: Path, timeout: float) -> Iterator[RunSQL]:
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StatementError(f"cannot open SQLite database {str(path)!r}: {exc}", "database") from None
    deadline = [float("inf")]
    # The progress handler aborts a statement (and its fetches) once the deadline has passed.
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline[0]), 1_000)

    def run(sql: str) -> int:
        deadline[0] = time.monotonic() + timeout
        try:
            cursor = connection.execute(sql)
            return _count(cursor.fetchmany)
        except sqlite3.Error as exc:
            if time.monotonic() > deadline[0]:
                raise StatementError(f"did not finish within {timeout:g} s", "timeout") from None
            raise StatementError(f"{type(exc).__name__}: {exc}", "execution-error") from None
        finally:
            deadline[0] = float("inf")

    try:
        yield run
    finally:
        connection.close()


@contextmanager
def _duckdb(path: Path, timeout: float) -> Iterator[RunSQL]:
    import duckdb

    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise StatementError(f"cannot open DuckDB database {str(path)!r}: {exc}", "database") from None

    def run(sql: str) -> int:
        timer = threading.Timer(timeout, connection.interrupt)
        timer.start()
        try:
            cursor = connection.execute(sql)
            return _count(cursor.fetchmany) if cursor.description else 0
        except duckdb.InterruptException:
            raise StatementError(f"did not finish within {timeout:g} s", "timeout") from None
        except duckdb.Error as exc:
            raise StatementError(str(exc).splitlines()[0], "execution-error") from None
        finally:
            timer.cancel()

    try:
        yield run
    finally:
        connection.close()


def _count(fetchmany: Callable[[int], list[Any]]) -> int:
    total = 0
    while batch := fetchmany(FETCH_SIZE):
        total += len(batch)
    return total
