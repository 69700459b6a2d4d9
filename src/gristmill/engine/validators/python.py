"""The ``python`` validator: ``ast.parse``, one ruff run per chunk, and (opt-in) execution.

Every snippet of a chunk is written into one temporary directory and linted by one
``ruff check --isolated`` call (``ruff_select`` rules, the running Python's version). With
``execute: true`` each snippet that parsed and linted clean is run by
:func:`gristmill.engine.validators.sandbox.run_snippet`.
"""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gristmill.config.validation import EXTRA_HINT, PythonValidatorParams, ValidationColumn, ruff_binary
from gristmill.engine.validators.base import (
    CellFailure,
    Chunk,
    Message,
    Outcome,
    code_problem,
    strip_fence,
    verdict_of,
)
from gristmill.engine.validators.sandbox import SandboxError, run_snippet
from gristmill.errors import ConfigError

RUFF_TIMEOUT = 300.0  # seconds for one lint run of a whole chunk


@dataclass(frozen=True)
class Snippet:
    """One target value of one row, as written to the lint directory."""

    row: int  # position in the chunk
    target: str
    code: str
    line_offset: int  # lines of the cell before the code (an opening fence)


class PythonValidator:
    max_parallel = 1

    def __init__(self, column: ValidationColumn, params: PythonValidatorParams) -> None:
        binary = ruff_binary()
        if binary is None:
            raise ConfigError(f"column {column.name!r}: the python validator needs the ruff binary; {EXTRA_HINT}")
        self.ruff = binary
        self.params = params
        self.target_version = f"py3{min(sys.version_info.minor, 13)}"

    async def validate(self, chunk: Chunk) -> list[Outcome]:
        # ruff and the snippets run as subprocesses: off the event loop.
        return await asyncio.to_thread(self._validate, chunk)

    def _validate(self, chunk: Chunk) -> list[Outcome]:
        found: list[list[Message]] = [[] for _ in range(len(chunk))]
        snippets: list[Snippet] = []
        for row, values in enumerate(chunk.values):
            for target in chunk.targets:
                snippet, problem = _parse(row, target, values[target])
                if problem is not None:
                    found[row].append(problem)
                elif snippet is not None:
                    snippets.append(snippet)
        try:
            for snippet, message in self._lint(snippets):
                found[snippet.row].append(message)
            if self.params.execute:
                self._execute(snippets, found)
        except SandboxError as exc:
            return [CellFailure(str(exc)) for _ in range(len(chunk))]
        return [verdict_of(messages) for messages in found]

    def _lint(self, snippets: list[Snippet]) -> list[tuple[Snippet, Message]]:
        if not snippets:
            return []
        with tempfile.TemporaryDirectory(prefix="gristmill-ruff-") as tmp:
            names = {}
            for index, snippet in enumerate(snippets):
                name = f"snippet_{index:05d}.py"
                (Path(tmp) / name).write_text(snippet.code, encoding="utf-8")
                names[name] = snippet
            diagnostics = self._run_ruff(tmp)
        found = []
        for item in diagnostics:
            linted = names.get(Path(str(item.get("filename", ""))).name)
            if linted is None:
                continue
            row = (item.get("location") or {}).get("row")
            line = row + linted.line_offset if isinstance(row, int) else None
            found.append((linted, Message(linted.target, str(item.get("message", "")), line, item.get("code"))))
        return found

    def _run_ruff(self, directory: str) -> list[dict[str, Any]]:
        argv = [self.ruff, "check", "--output-format", "json", "--no-cache", "--isolated", "--exit-zero",
                "--select", ",".join(self.params.ruff_select), "--target-version", self.target_version, "."]
        try:
            done = subprocess.run(argv, cwd=directory, capture_output=True, text=True, timeout=RUFF_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"ruff could not lint the snippets: {exc}") from None
        if done.returncode != 0:
            raise SandboxError(f"ruff exited with status {done.returncode}: {done.stderr.strip()[-500:]}")
        try:
            diagnostics = json.loads(done.stdout or "[]")
        except ValueError:
            raise SandboxError(f"ruff printed no JSON: {done.stdout[:200]!r}") from None
        return [item for item in diagnostics if isinstance(item, dict)]

    def _execute(self, snippets: list[Snippet], found: list[list[Message]]) -> None:
        # Only code that parsed and linted clean runs: the rest is invalid already.
        for snippet in snippets:
            if any(m.target == snippet.target for m in found[snippet.row]):
                continue
            problem = run_snippet(snippet.code, timeout=self.params.timeout,
                                  max_output_bytes=self.params.max_output_bytes)
            if problem is not None:
                line = None if problem.line is None else problem.line + snippet.line_offset
                found[snippet.row].append(Message(snippet.target, problem.message, line, problem.code))


def _parse(row: int, target: str, value: Any) -> tuple[Snippet | None, Message | None]:
    """The snippet to lint, or the message saying why the value is invalid already."""
    problem = code_problem(target, value, "Python code")
    if problem is not None:
        return None, problem
    code, offset = strip_fence(value)
    problem = code_problem(target, code, "Python code")  # a fence around nothing
    if problem is not None:
        return None, problem
    try:
        ast.parse(code)
    except SyntaxError as exc:
        line = None if exc.lineno is None else exc.lineno + offset
        return None, Message(target, f"SyntaxError: {exc.msg}", line, "syntax-error")
    except ValueError as exc:  # e.g. a null byte in the source
        return None, Message(target, f"not parseable: {exc}", None, "syntax-error")
    return Snippet(row, target, code, offset), None
