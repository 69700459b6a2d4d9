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

Every cache entry holds the value (``v``), the reasoning (``r``) and the messages exchanged after
the request (``t``: answers and corrections), so ``with_trace`` is served from the cache too;
entries written before traces existed get a trace whose answer is the stored value.
Images and audio of ``multi_modal_context`` are read (files off the event loop) per chunk of rows
and sent as content parts; a cell whose file cannot be read fails without a request.
``temperature`` / ``top_p`` given as distributions are drawn per row from a stream seeded by (run
seed, batch, column, parameter), so a rerun sends the same bodies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.config.llm_columns import (
    REASONING_SUFFIX,
    TRACE_SUFFIX,
    LLMColumnBase,
    LLMJudgeColumn,
    MultiModalContext,
)
from gristmill.config.models import PARAMETER_RANGES
from gristmill.engine.generators.base import (
    BatchFrame,
    ColumnValues,
    EngineContext,
    ModelColumnGenerator,
    gather_or_cancel,
)
from gristmill.engine.generators.tool_loop import ToolConversation
from gristmill.engine.sandbox import TemplateLimits
from gristmill.errors import (
    GenerationError,
    ModelAuthError,
    ModelError,
    ModelResponseError,
    ModelUnreachableError,
)
from gristmill.llm.cache import ResponseCache
from gristmill.llm.parsing import ParseError, extract_code, extract_json, split_reasoning
from gristmill.llm.schema import validate
from gristmill.llm.types import Conversation, Message, RequestBody, TraceEntry, content_text, trace_entry, trace_of
from gristmill.sampling.rng import column_rng, stream_key

logger = logging.getLogger("gristmill")

JSON_INSTRUCTION = "Respond with a JSON object matching this JSON schema:\n```json\n{schema}\n```"
CORRECTION = "That answer could not be used: {error}. Reply again with only the corrected JSON."
CODE_CORRECTION = "That answer could not be used: {error}. Reply again with the code in a ```{lang} fenced block."
TEXT_CORRECTION = "That answer could not be used: {error}. Reply again."
# The trace column's type, the same in every batch (a batch of skipped rows included).
TRACE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("reasoning", pa.string())]))


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


# ------------------------------------------------------------------------------------- multimodal context

# OpenAI's limit for one image; a file larger than this is a mistake (a video, a dump), not context.
MAX_CONTEXT_BYTES = 20 * 1024 * 1024
_IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                   ".webp": "image/webp"}
_AUDIO_SUFFIXES = {".wav": "wav", ".mp3": "mp3"}


class ContextError(ValueError):
    """A cell's image or audio cannot be sent; the message names the column, the value and why."""


def with_context(message: Message, contexts: list[MultiModalContext], values: list[Any]) -> Message:
    """The user ``message`` with the parts of each context (its cell ``values``) after the text;
    the message itself when every cell is empty. Raises ContextError."""
    parts = [part for context, value in zip(contexts, values, strict=True) for part in context_parts(context, value)]
    if not parts:
        return message
    return {**message, "content": [{"type": "text", "text": message["content"]}, *parts]}


def context_parts(context: MultiModalContext, value: Any) -> list[dict[str, Any]]:
    """The content parts of one cell: none for null or empty, one per item of a list."""
    items = value if isinstance(value, list) else [value]
    parts = []
    for item in items:
        if item is None or item == "" or item == b"":
            continue
        if not isinstance(item, str | bytes):
            raise ContextError(f"column {context.column!r} holds a {type(item).__name__}, not a {context.type} "
                               f"{context.format}")
        if context.type == "image":
            image: dict[str, Any] = {"url": _image_url(context, item)}
            if context.detail is not None:
                image["detail"] = context.detail
            parts.append({"type": "image_url", "image_url": image})
        else:
            data, audio_format = _audio(context, item)
            parts.append({"type": "input_audio", "input_audio": {"data": data, "format": audio_format}})
    return parts


def _image_url(context: MultiModalContext, item: str | bytes) -> str:
    if isinstance(item, bytes):  # a binary column: the image itself
        return _data_url(context.media_type or _sniff_image(item) or "image/png", item)
    if context.format == "url":
        if not item.startswith(("http://", "https://", "data:")):
            raise ContextError(f"column {context.column!r}: {_shown(item)} is not an http(s):// or data: URL; "
                               "set format: path for local files")
        return item
    if context.format == "base64":
        if item.startswith("data:"):
            return item
        head = _decoded(context, item)[:16]
        return f"data:{context.media_type or _sniff_image(head) or 'image/png'};base64,{''.join(item.split())}"
    path = _resolve(context, item)
    data = _read(context, path)
    media_type = context.media_type or _IMAGE_SUFFIXES.get(path.suffix.lower()) or _sniff_image(data)
    if media_type is None:
        raise ContextError(f"column {context.column!r}: cannot tell the image type of {str(path)!r} (not png, "
                           "jpeg, gif or webp by its name or bytes); set media_type")
    return _data_url(media_type, data)


def _audio(context: MultiModalContext, item: str | bytes) -> tuple[str, str]:
    """(base64 data, 'wav' | 'mp3') of an audio cell."""
    if isinstance(item, bytes):
        return base64.b64encode(item).decode("ascii"), context.media_type or _sniff_audio(item)
    if context.format == "base64":
        return "".join(item.split()), context.media_type or _sniff_audio(_decoded(context, item)[:16])
    path = _resolve(context, item)
    data = _read(context, path)
    audio_format = context.media_type or _AUDIO_SUFFIXES.get(path.suffix.lower()) or _sniff_audio(data)
    return base64.b64encode(data).decode("ascii"), audio_format


def _resolve(context: MultiModalContext, item: str) -> Path:
    path = Path(item.removeprefix("file://")).expanduser()
    if not path.is_absolute() and context.base_dir is not None:
        path = Path(context.base_dir).expanduser() / path
    return path


def _read(context: MultiModalContext, path: Path) -> bytes:
    where = (f"base_dir {context.base_dir!r}" if context.base_dir is not None
             else f"the working directory {str(Path.cwd())!r}")
    try:
        size = path.stat().st_size
        if size > MAX_CONTEXT_BYTES:
            raise ContextError(f"{context.type} file {str(path)!r} (column {context.column!r}) is {size / 1e6:.1f} MB, "
                               f"more than the {MAX_CONTEXT_BYTES // 2**20} MB one request part may carry")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ContextError(f"{context.type} file {str(path)!r} (column {context.column!r}) does not exist; "
                           f"relative paths are taken from {where}") from None
    except OSError as exc:
        raise ContextError(f"cannot read {context.type} file {str(path)!r} (column {context.column!r}): "
                           f"{exc.strerror or exc}") from None
    if not data:
        raise ContextError(f"{context.type} file {str(path)!r} (column {context.column!r}) is empty")
    return data


def _decoded(context: MultiModalContext, item: str) -> bytes:
    try:
        return base64.b64decode("".join(item.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ContextError(f"column {context.column!r}: {_shown(item)} is not base64 data") from None


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _sniff_audio(data: bytes) -> str:
    return "mp3" if data.startswith((b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")) else "wav"


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


# ---------------------------------------------------------------------------------------------- generator

@dataclass
class _BatchFailures:
    """The failed cells of one batch of one column: logged once when the batch ends."""

    count: int = 0
    first: str = ""
    unreadable: int = 0  # cells not asked: their image or audio could not be read
    first_unreadable: str = ""


@dataclass
class _Chunk:
    """Rows of a batch ready to start: their bodies, and the rows whose request cannot be built."""

    bodies: dict[int, RequestBody]
    unreadable: dict[int, str]


class LLMColumnGenerator(ModelColumnGenerator):
    """Generates one LLM column for each batch it is given."""

    def __init__(self, column: LLMColumnBase, context: EngineContext, output_format: OutputFormat) -> None:
        super().__init__(column, context)
        self.column = column
        self.format = output_format
        self.max_corrections = getattr(column, "max_corrections", 0)
        self.schema = self.format.json_schema(column)
        self.instruction = self.format.instruction(column)
        self.limits = TemplateLimits.from_run_config(context.run_config)
        parameters = self.handle.resolved.model.inference_parameters
        self.drawn = parameters.drawn_params()
        self.fixed_params = parameters.fixed_params()
        # The embedded model samples with the seed a body gives (llm/local.py): one per row, drawn
        # from (run seed, column, row), so rows with the same prompt still differ and a request
        # asked again is answered the same. An endpoint's own sampling is left alone.
        provider = self.handle.resolved.provider
        self.row_seeds = (provider.provider_type == "local" and "seed" not in self.fixed_params
                          and "seed" not in provider.extra_body)
        # Tool use (tool_alias): the conversation loop, cached per turn (tool_loop.py).
        self.tools: ToolConversation | None = None
        if column.tool_alias is not None:
            self.tools = ToolConversation(handle=self.handle, tools=self.llm.tools, tool_alias=column.tool_alias,
                                          cache=self.cache, cache_column=self.cache_column, usage=self.usage)

    def messages(self, frame: BatchFrame, rows: list[int] | None = None) -> list[list[Message]]:
        """The text chat messages of ``rows`` (default ``frame.active_rows()``); other rows get none:
        they are skipped, and their cells may hold nulls a prompt cannot read."""
        rows = frame.active_rows() if rows is None else rows
        try:
            prompts = frame.render(self.column.prompt, rows, self.limits)
            systems = frame.render(self.column.system_prompt, rows, self.limits) if self.column.system_prompt else None
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

    def request_bodies(self, frame: BatchFrame, rows: list[int]) -> tuple[dict[int, RequestBody], dict[int, str]]:
        """The request body of each of ``rows`` (images read, parameters drawn), and the rows whose
        body cannot be built with the reason: what the cache keys of a batch are made of (the bill
        uses it to find what a run would pay)."""
        chunk = self._bodies(frame, rows, self.messages(frame, rows), self._row_params(frame),
                             self._context_values(frame))
        return chunk.bodies, chunk.unreadable

    def cached_cells(self, stored: dict[str, Any], body: RequestBody) -> dict[str, Any]:
        """The output cells of one response-cache entry, by output column name."""
        cells = {self.column.name: stored.get("v")}
        if self.column.keep_reasoning:
            cells[self.column.name + REASONING_SUFFIX] = stored.get("r")
        if self.column.with_trace != "none":
            cells[self.column.name + TRACE_SUFFIX] = trace_of(body["messages"], _turns(stored),
                                                              self.column.with_trace)
        return cells

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        n = frame.num_rows
        if self.tools is not None:
            await self.tools.prepare()  # opens the MCP sessions, lists the tools
        messages = self.messages(frame)
        params = self._row_params(frame)
        contexts = self._context_values(frame)
        results: list[Any] = [None] * n
        sent: list[list[TraceEntry]] = [[] for _ in range(n)]  # each request's messages, for traces
        pending: list[int] = []
        tasks: list[asyncio.Future[Any]] = []
        failed = _BatchFailures()
        # Requests start as soon as the first rows are ready: the rest of the batch's bodies,
        # cache keys and cache lookups are prepared while those first answers are on their way.
        active = frame.active_rows()  # skipped rows: no request, no cost
        self.progress.cells_done(n - len(active))
        try:
            size = max(64, 2 * self.handle.throttle.slots)
            for start in range(0, len(active), size):
                rows = active[start:start + size]
                chunk = (await asyncio.to_thread(self._bodies, frame, rows, messages, params, contexts)
                         if contexts else self._bodies(frame, rows, messages, params, contexts))
                self._fail_unreadable(frame, chunk.unreadable, failed)
                if self.column.with_trace == "all_messages":
                    for i, body in chunk.bodies.items():
                        sent[i] = [trace_entry(m) for m in body["messages"]]
                for i, task in self._start_rows(chunk.bodies, params, frame, results, failed):
                    pending.append(i)
                    tasks.append(task)
                await asyncio.sleep(0)  # the started requests go out before the next rows are prepared
            for i, value in zip(pending, await gather_or_cancel(tasks), strict=True):
                results[i] = value
        finally:
            self._log_failures(frame, failed, len(pending))
        if pending and self.errors.tripped():
            raise self._stop_error()
        return self._outputs(results, sent)

    def _outputs(self, results: list[Any], sent: list[list[TraceEntry]]) -> dict[str, ColumnValues]:
        name = self.column.name
        out: dict[str, ColumnValues] = {name: [r["v"] if r else None for r in results]}
        if self.column.keep_reasoning:
            out[name + REASONING_SUFFIX] = [r["r"] if r else None for r in results]
        if self.column.with_trace != "none":
            # sent[i] holds the request's messages as trace entries (all_messages only).
            traces = [None if r is None else trace_of([], sent[i] + _turns(r), self.column.with_trace)
                      for i, r in enumerate(results)]
            out[name + TRACE_SUFFIX] = pa.array(traces, type=TRACE_TYPE)
        return out

    def _row_params(self, frame: BatchFrame) -> list[dict[str, float]] | None:
        """The drawn parameters of every row of the batch (None when the model draws none): one
        stream per (run seed, batch, column, parameter), so a row draws the same on every run."""
        if not self.drawn:
            return None
        drawn: dict[str, np.ndarray] = {}
        for name, spec in self.drawn.items():
            rng = column_rng(frame.run_seed, frame.batch_index, self.column.name, f"inference:{name}")
            values = np.asarray(getattr(rng, spec.distribution)(**spec.params, size=frame.num_rows), dtype=float)
            low, high = PARAMETER_RANGES[name]
            drawn[name] = np.clip(np.round(values, 4), low, high)
        return [{name: float(values[i]) for name, values in drawn.items()} for i in range(frame.num_rows)]

    def _context_values(self, frame: BatchFrame) -> list[list[Any]]:
        """The cells of each multimodal context column (read here, on the loop, not in a worker thread)."""
        return [frame.pylist(context.column) for context in self.column.multi_modal_context]

    def _bodies(self, frame: BatchFrame, rows: list[int], messages: list[list[Message]],
                params: list[dict[str, float]] | None, contexts: list[list[Any]]) -> _Chunk:
        """Bodies of ``rows``, with their images or audio read and encoded (may block on files)."""
        chunk = _Chunk({}, {})
        for i in rows:
            row_messages = messages[i]
            if contexts:
                try:
                    row_messages = [*row_messages[:-1], with_context(row_messages[-1], self.column.multi_modal_context,
                                                                     [values[i] for values in contexts])]
                except ContextError as exc:
                    chunk.unreadable[i] = str(exc)
                    continue
            body = self._build(row_messages, params[i] if params else None)
            if self.row_seeds:
                body = {**body, "seed": _row_seed(frame.run_seed, self.column.name, frame.row_offset + i)}
            chunk.bodies[i] = body
        return chunk

    def _build(self, messages: list[Message], params: dict[str, float] | None) -> RequestBody:
        """A request body; with the row's drawn parameters when the model draws some. A model with
        fixed parameters only goes through ``handle.build_body``, so its bodies (and cache keys)
        are what they always were."""
        if not params:
            body = self.handle.build_body(messages, self.schema)
        else:
            body = self.handle.client.build_body(self.handle.resolved.model.model, messages,
                                                 params={**self.fixed_params, **params}, json_schema=self.schema)
        return self.tools.with_tools(body) if self.tools is not None else body

    def _fail_unreadable(self, frame: BatchFrame, unreadable: dict[int, str], failed: _BatchFailures) -> None:
        """Rows whose image or audio cannot be read: failed cells, no request, not the endpoint's fault
        (they do not count towards ``max_error_rate``)."""
        for i, reason in unreadable.items():
            frame.fail(i, reason, 0)
            failed.unreadable += 1
            failed.first_unreadable = failed.first_unreadable or reason
        self.progress.cells_done(len(unreadable))

    def _log_failures(self, frame: BatchFrame, failed: _BatchFailures, asked: int) -> None:
        if failed.count:
            logger.warning("gristmill: %d of %d cells of column %r (batch %d, model %r) failed; first error: %s",
                           failed.count, asked, self.column.name, frame.batch_index,
                           self.handle.alias, " ".join(failed.first.split()))
        if failed.unreadable:
            logger.warning("gristmill: %d cells of column %r (batch %d) failed without a request: their "
                           "multimodal context could not be read; first: %s", failed.unreadable,
                           self.column.name, frame.batch_index, failed.first_unreadable)

    def _start_rows(self, bodies: dict[int, RequestBody], params: list[dict[str, float]] | None,
                    frame: BatchFrame, results: list[Any],
                    failed: _BatchFailures) -> list[tuple[int, asyncio.Future[Any]]]:
        """Fill ``results`` for the rows of ``bodies`` the cache holds; start a request for every other row."""
        keys: dict[int, str] = {}
        # A tool column replays its conversation from the per-turn cache instead (tool_loop.py): the
        # tools are called again, so a changed tool result is noticed and only what follows it is paid.
        if self.cache is not None and self.tools is None:
            keys = {i: ResponseCache.key(identity=self.handle.identity, body=body, column=self.cache_column,
                                         row=frame.row_offset + i) for i, body in bodies.items()}
            cached = self.cache.get_many(list(keys.values()))
            self.usage["cache_hits"] += len(cached)
            self.progress.cells_done(len(cached))
            for _ in cached:  # a cell the cache answers succeeded: a rerun's few failures are not a broken endpoint
                self.errors.record(True)
            for i, key in keys.items():
                results[i] = cached.get(key)
        return [(i, asyncio.ensure_future(self._cell(frame, i, body, params[i] if params else None, keys.get(i),
                                                     failed)))
                for i, body in bodies.items() if results[i] is None]

    def _stop_error(self) -> ModelError:
        return ModelError(
            f"stopping: {self.errors.failures} of the last {len(self.errors.outcomes)} cells of column "
            f"{self.column.name!r} failed on model {self.handle.alias!r}; last error: {self.errors.last_error}. "
            + ("Nothing was written; fix the endpoint and preview again." if self.previewing else
               "Completed batches are kept; fix the endpoint and resume."))

    async def _cell(self, frame: BatchFrame, row: int, body: RequestBody, params: dict[str, float] | None,
                    key: str | None, failed: _BatchFailures) -> dict[str, Any]:
        """The cache entry of one cell: value, reasoning and the turns exchanged. A failed cell's
        value is None (and its entry is not stored) but its turns are kept for the trace."""
        conversation = Conversation(body["messages"])
        self.progress.waiting(self.handle.throttle, 1)
        try:
            value, reasoning = await self._ask(conversation, body, params, frame.row_offset + row)
        except (ModelAuthError, ModelUnreachableError):  # the whole run stops, not one cell
            raise
        except ModelError as exc:
            self.usage["failures"] += 1
            failed.count += 1
            failed.first = failed.first or str(exc)
            frame.fail(row, " ".join(str(exc).split()), max(conversation.requests, 1))
            self.progress.cells_done(1)
            if self.errors.record(False, str(exc)):
                raise self._stop_error() from exc
            return {"v": None, "r": None, "t": conversation.turns()}
        finally:
            self.progress.waiting(self.handle.throttle, -1)
        self.errors.record(True)
        # "p", "row" and "u" are for people browsing the cache (gristmill cache logs), not read back.
        stored = {"v": value, "r": reasoning, "t": conversation.turns(), "p": _prompt_text(body["messages"]),
                  "row": frame.row_offset + row, "u": [conversation.input_tokens, conversation.output_tokens]}
        if key is not None and self.cache is not None:
            self.cache.put(key, stored, column=self.cache_column)
        self.progress.cells_done(1)
        return stored

    async def _ask(self, conversation: Conversation, body: RequestBody,
                   params: dict[str, float] | None, row: int) -> tuple[Any, str | None]:
        """One cell: the request, then corrections while the answer does not parse. Every message
        exchanged is added to ``conversation`` (``conversation.requests`` counts the answers)."""
        for correction in range(self.max_corrections + 1):
            if self.tools is not None:
                completion = await self.tools.complete(conversation, body, row, lambda m: self._build(m, params))
            else:
                completion = await self.handle.complete(body, self.usage)
            conversation.answered(completion)
            content, reasoning = split_reasoning(completion.content, completion.reasoning)
            conversation.add({"role": "assistant", "content": content}, reasoning=reasoning)
            try:
                if not content:
                    raise ParseError("the answer is empty")
                return self.format.parse(self.column, content), reasoning
            except ParseError as exc:
                if correction == self.max_corrections:
                    raise ModelResponseError(f"model {self.handle.alias!r} gave an unusable answer for column "
                                             f"{self.column.name!r} after {correction} corrections: {exc}") from exc
                self.usage["corrections"] += 1
                conversation.add({"role": "user", "content": self.format.correction(self.column, str(exc))})
                body = {**self._build(list(conversation.messages), params),
                        **({"seed": body["seed"]} if "seed" in body else {})}  # the row's seed, if it has one
        raise AssertionError("unreachable")


def _row_seed(run_seed: int, column: str, row: int) -> int:
    """The embedded model's sampling seed for one cell (31 bits)."""
    return stream_key(run_seed, column, row, "sampling seed") & 0x7FFFFFFF


def _prompt_text(messages: list[Message]) -> str:
    """The request's last user message as text (images and audio as short markers)."""
    return content_text(next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), ""))


def _turns(stored: dict[str, Any]) -> list[TraceEntry]:
    """The turns of a cache entry; an entry written before traces existed holds only the value,
    so its trace shows the value (JSON for structured values) as the answer."""
    turns = stored.get("t")
    if isinstance(turns, list):
        return turns
    value = stored.get("v")
    content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return [{"role": "assistant", "content": content, "reasoning": stored.get("r")}]


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
