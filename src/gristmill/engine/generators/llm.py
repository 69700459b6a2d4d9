"""Generators of the LLM column types: one request per row, all rows of a batch in flight at once
(bounded by the model's shared throttle), answers served from and written to the response cache.

A cell that fails (after the runtime's retries, or after ``max_corrections`` for structured
output and code; an empty answer is a failure too) is None and never cached; each batch logs
one warning per column with the number of failed cells and the first failure's message. When
the share of failed cells in the last ``error_window`` cells exceeds ``max_error_rate`` (checked
as cells finish, and at the end of each batch over the cells seen so far, so a run smaller than
the window also stops), ``generate`` raises ``ModelError`` naming the model and the last error,
so the run stops and keeps its completed batches. 401/403 stop the run at once.

Cache keys hold the column name prefixed by ``EngineContext.cache_scope`` (the workflow stage),
so two stages with the same column name and prompt do not share answers.

Each cell is reported to ``EngineContext.progress`` when it finishes (answered, served from the
cache, failed or skipped), and while its request waits, so the progress line moves per cell.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gristmill.config.llm_columns import REASONING_SUFFIX, LLMColumnBase, LLMJudgeColumn
from gristmill.engine.generators.base import BatchFrame, ColumnValues, EngineContext, ErrorWindow
from gristmill.engine.sandbox import TemplateLimits
from gristmill.engine.templates import render_column
from gristmill.errors import (
    ConfigError,
    GenerationError,
    ModelAuthError,
    ModelError,
    ModelResponseError,
    ModelUnreachableError,
)
from gristmill.llm.cache import ResponseCache
from gristmill.llm.parsing import ParseError, extract_code, extract_json, split_reasoning
from gristmill.llm.schema import validate
from gristmill.llm.types import Message

logger = logging.getLogger("gristmill")

JSON_INSTRUCTION = "Respond with a JSON object matching this JSON schema:\n```json\n{schema}\n```"
CORRECTION = "That answer could not be used: {error}. Reply again with only the corrected JSON."
CODE_CORRECTION = "That answer could not be used: {error}. Reply again with the code in a ```{lang} fenced block."
TEXT_CORRECTION = "That answer could not be used: {error}. Reply again."


@dataclass(frozen=True)
class OutputFormat:
    """What a column type asks for and how it reads the answer."""

    instruction: Callable[[Any], str]  # appended to the user message
    json_schema: Callable[[Any], dict[str, Any] | None]
    parse: Callable[[Any, str], Any]  # raises ParseError; the message goes back to the model
    correction: Callable[[Any, str], str] = lambda c, error: CORRECTION.format(error=error)


def _no_schema(column: Any) -> None:
    return None


def _json_value(schema: dict[str, Any], text: str, coerce: Callable[[Any], Any] | None = None) -> Any:
    value = extract_json(text)
    if coerce is not None:
        value = coerce(value)
    errors = validate(value, schema)
    if errors:
        raise ParseError("the JSON does not match the schema: " + "; ".join(errors[:5]))
    return value


def _judge_rubric(column: LLMJudgeColumn) -> str:
    lines = ["Judge the content above on each of these scores:"]
    for score in column.scores:
        options = "; ".join(f"{value} = {meaning}" for value, meaning in score.options.items())
        lines.append(f"- {score.name}: {score.description} Options: {options}.")
    lines.append("For each score give your reasoning, then the score.")
    lines.append(JSON_INSTRUCTION.format(schema=json.dumps(column.json_schema())))
    return "\n".join(lines)


def _judge_coerce(column: LLMJudgeColumn) -> Callable[[Any], Any]:
    numeric = {s.name for s in column.scores if s.numeric()}

    def coerce(value: Any) -> Any:
        if isinstance(value, dict):
            for name in numeric:
                entry = value.get(name)
                if isinstance(entry, dict) and isinstance(entry.get("score"), str | float):
                    try:
                        entry["score"] = int(float(entry["score"]))
                    except ValueError:
                        pass
        return value

    return coerce


def _parse_judge(column: LLMJudgeColumn, text: str) -> Any:
    value = _json_value(column.json_schema(), text, _judge_coerce(column))
    return {s.name: {"score": value[s.name]["score"], "reasoning": value[s.name]["reasoning"]}
            for s in column.scores}


TEXT_FORMAT = OutputFormat(lambda c: "", _no_schema, lambda c, text: text,
                           lambda c, error: TEXT_CORRECTION.format(error=error))
CODE_FORMAT = OutputFormat(
    lambda c: f"Answer with the code in a single ```{c.code_fence} fenced code block.", _no_schema,
    lambda c, text: extract_code(text, c.code_fence),
    lambda c, error: CODE_CORRECTION.format(error=error, lang=c.code_fence))
STRUCTURED_FORMAT = OutputFormat(
    lambda c: JSON_INSTRUCTION.format(schema=json.dumps(c.output_format)), lambda c: c.output_format,
    lambda c, text: _json_value(c.output_format, text))
JUDGE_FORMAT = OutputFormat(_judge_rubric, lambda c: c.json_schema(), _parse_judge)
# By column type, for tests and readers; the engine gets each format from the generator factory the
# column type is registered with (``config/builtins.py``), not from this table.
FORMATS: dict[str, OutputFormat] = {"llm_text": TEXT_FORMAT, "llm_code": CODE_FORMAT,
                                    "llm_structured": STRUCTURED_FORMAT, "llm_judge": JUDGE_FORMAT}


@dataclass
class _BatchFailures:
    """The failed cells of one batch of one column: logged once when the batch ends."""

    count: int = 0
    first: str = ""


class LLMColumnGenerator:
    """Generates one LLM column for each batch it is given."""

    def __init__(self, column: LLMColumnBase, context: EngineContext, output_format: OutputFormat) -> None:
        if context.llm is None:
            raise ModelError(f"column {column.name!r} needs a model, but the run has no LLM runtime")
        self.column = column
        self.format = output_format
        self.handle = context.llm.model(column.model_alias, getattr(context.config, "models", ()))
        if self.handle.resolved.model.generation_type != "chat":
            raise ConfigError(f"column {column.name!r}: model alias {column.model_alias!r} is an embedding "
                              "model; LLM columns need a model with generation_type: chat")
        self.cache: ResponseCache | None = context.response_cache if context.run_config.cache else None
        scope = getattr(context, "cache_scope", "") or ""
        self.cache_column = f"{scope}/{column.name}" if scope else column.name
        self.usage = context.usage[column.model_alias]
        self.progress = context.progress
        self.errors = ErrorWindow(context.run_config.max_error_rate, context.run_config.error_window)
        self.max_corrections = getattr(column, "max_corrections", 0)
        self.schema = self.format.json_schema(column)
        self.instruction = self.format.instruction(column)
        self.limits = TemplateLimits.from_run_config(context.run_config)
        self.previewing = context.dataset_dir is None  # preview writes nothing: no resume to suggest

    def messages(self, frame: BatchFrame) -> list[list[Message]]:
        """The chat messages of each row the frame asks for (``frame.active_rows()``); other rows
        get none: they are skipped, and their cells may hold nulls a prompt cannot read."""
        rows = frame.active_rows()
        every = len(rows) == frame.num_rows

        def column(name: str) -> list[Any]:
            values = frame.pylist(name)
            return values if every else [values[i] for i in rows]

        try:
            prompts = render_column(self.column.prompt, len(rows), column, limits=self.limits)
            systems = (render_column(self.column.system_prompt, len(rows), column, limits=self.limits)
                       if self.column.system_prompt else None)
        except GenerationError as exc:  # a template over its time or size limit: name the column
            raise GenerationError(f"column {self.column.name!r} prompt: {exc}") from None
        if systems is None and isinstance(self.column, LLMJudgeColumn):
            systems = ["You are a careful, impartial judge."] * len(rows)
        suffix = "\n\n" + self.instruction if self.instruction else ""
        out: list[list[Message]] = [[] for _ in range(frame.num_rows)]
        for j, i in enumerate(rows):
            user: Message = {"role": "user", "content": prompts[j] + suffix}
            out[i] = [{"role": "system", "content": systems[j]}, user] if systems else [user]
        return out

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        n = frame.num_rows
        messages = self.messages(frame)
        results: list[Any] = [None] * n
        pending: list[int] = []
        tasks: list[asyncio.Future[Any]] = []
        failed = _BatchFailures()
        # Requests start as soon as the first rows are ready: the rest of the batch's bodies,
        # cache keys and cache lookups are prepared while those first answers are on their way.
        active = frame.active_rows()  # skipped rows: no request, no cost
        self.progress.cells_done(n - len(active))
        try:
            chunk = max(64, 2 * self.handle.throttle.slots)
            for start in range(0, len(active), chunk):
                for i, task in self._start_rows(active[start:start + chunk], messages, frame, results, failed):
                    pending.append(i)
                    tasks.append(task)
                await asyncio.sleep(0)  # the started requests go out before the next rows are prepared
            for i, value in zip(pending, await asyncio.gather(*tasks), strict=True):
                results[i] = value
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if failed.count:
                logger.warning("gristmill: %d of %d cells of column %r (batch %d, model %r) failed; first error: %s",
                               failed.count, len(pending), self.column.name, frame.batch_index,
                               self.handle.alias, " ".join(failed.first.split()))
        if pending and self.errors.tripped():
            raise self._stop_error()
        out: dict[str, ColumnValues] = {self.column.name: [r["v"] if r else None for r in results]}
        if self.column.keep_reasoning:
            out[self.column.name + REASONING_SUFFIX] = [r["r"] if r else None for r in results]
        return out

    def _start_rows(self, rows: list[int], messages: list[list[Message]], frame: BatchFrame, results: list[Any],
                    failed: _BatchFailures) -> list[tuple[int, asyncio.Future[Any]]]:
        """Fill ``results`` for ``rows`` the cache holds; start a request for every other row."""
        bodies = {i: self.handle.build_body(messages[i], self.schema) for i in rows}
        keys: dict[int, str] = {}
        if self.cache is not None:
            keys = {i: ResponseCache.key(identity=self.handle.identity, body=bodies[i], column=self.cache_column,
                                         row=frame.row_offset + i) for i in rows}
            cached = self.cache.get_many(list(keys.values()))
            self.usage["cache_hits"] += len(cached)
            self.progress.cells_done(len(cached))
            for _ in cached:  # a cell the cache answers succeeded: a rerun's few failures are not a broken endpoint
                self.errors.record(True)
            for i, key in keys.items():
                results[i] = cached.get(key)
        return [(i, asyncio.ensure_future(self._cell(frame, i, bodies[i], keys.get(i), failed)))
                for i in rows if results[i] is None]

    def _stop_error(self) -> ModelError:
        return ModelError(
            f"stopping: {self.errors.failures} of the last {len(self.errors.outcomes)} cells of column "
            f"{self.column.name!r} failed on model {self.handle.alias!r}; last error: {self.errors.last_error}. "
            + ("Nothing was written; fix the endpoint and preview again." if self.previewing else
               "Completed batches are kept; fix the endpoint and resume."))

    async def _cell(self, frame: BatchFrame, row: int, body: dict[str, Any], key: str | None,
                    failed: _BatchFailures) -> dict[str, Any] | None:
        attempts = [0]
        self.progress.waiting(self.handle.throttle, 1)
        try:
            value, reasoning = await self._ask(body, attempts)
        except (ModelAuthError, ModelUnreachableError):  # the whole run stops, not one cell
            raise
        except ModelError as exc:
            self.usage["failures"] += 1
            failed.count += 1
            failed.first = failed.first or str(exc)
            frame.fail(row, " ".join(str(exc).split()), max(attempts[0], 1))
            self.progress.cells_done(1)
            if self.errors.record(False, str(exc)):
                raise self._stop_error() from exc
            return None
        finally:
            self.progress.waiting(self.handle.throttle, -1)
        self.errors.record(True)
        stored = {"v": value, "r": reasoning}
        if key is not None and self.cache is not None:
            self.cache.put(key, stored, column=self.cache_column)
        self.progress.cells_done(1)
        return stored

    async def _ask(self, body: dict[str, Any], attempts: list[int]) -> tuple[Any, str | None]:
        """One cell: the request, then corrections while the answer does not parse. ``attempts[0]``
        counts the requests answered (each correction is one more)."""
        messages = list(body["messages"])
        for correction in range(self.max_corrections + 1):
            completion = await self.handle.complete(body, self.usage)
            attempts[0] += 1
            content, reasoning = split_reasoning(completion.content, completion.reasoning)
            try:
                if not content:
                    raise ParseError("the answer is empty")
                return self.format.parse(self.column, content), reasoning
            except ParseError as exc:
                if correction == self.max_corrections:
                    raise ModelResponseError(f"model {self.handle.alias!r} gave an unusable answer for column "
                                             f"{self.column.name!r} after {correction} corrections: {exc}") from exc
                self.usage["corrections"] += 1
                messages += [{"role": "assistant", "content": content},
                             {"role": "user", "content": self.format.correction(self.column, str(exc))}]
                body = self.handle.build_body(messages, self.schema)
        raise AssertionError("unreachable")


class LLMGeneratorFactory:
    """A generator factory of one LLM column type: the type's output format is fixed here, at
    registration (``config/builtins.py``), so no table keyed by column type is consulted."""

    def __init__(self, output_format: OutputFormat) -> None:
        self.output_format = output_format

    def __call__(self, column: LLMColumnBase, context: EngineContext) -> LLMColumnGenerator:
        return LLMColumnGenerator(column, context, self.output_format)


llm_text_generator = LLMGeneratorFactory(TEXT_FORMAT)
llm_code_generator = LLMGeneratorFactory(CODE_FORMAT)
llm_structured_generator = LLMGeneratorFactory(STRUCTURED_FORMAT)
llm_judge_generator = LLMGeneratorFactory(JUDGE_FORMAT)


def build_llm_generator(column: LLMColumnBase, context: EngineContext) -> LLMColumnGenerator:
    """A generator for any built-in LLM column (kept for callers that do not know the type's factory)."""
    return LLMColumnGenerator(column, context, FORMATS[column.column_type])
