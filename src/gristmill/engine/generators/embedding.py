"""The generator of ``embedding`` columns: the active rows' texts, ``batch_size`` per request, all
requests of a batch in flight at once (bounded by the model's shared throttle).

Each vector is cached on its own, keyed by the model identity and the body of a one-text request
(never the row, nor how texts were grouped into requests): identical texts are embedded once,
and a resume, a larger ``num_records`` or a rerun pays only for texts the cache does not hold.
Vectors are stored in the cache as base64 float32, the values the column holds, so a cached
vector is bit-identical to a fresh one. A request's vectors are written to the cache before its
throttle slot is handed on, so a crash re-pays at most the requests in flight.

A cell fails (null, listed in ``__errors``) when its text is empty or null, when the endpoint
refuses it (a refused request of several texts is split in halves until the text at fault is
alone), when the request fails for good after the runtime's retries, or when the vector is not
usable (wrong length, not numbers). Endpoint failures count towards ``max_error_rate`` like LLM
cells; 401/403 stop the run at once. Each row's cell is reported to ``EngineContext.progress``
when it is done (embedded, served from the cache, failed or skipped).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gristmill.config.embedding import EmbeddingColumn
from gristmill.engine.generators.base import (
    BatchFrame,
    ColumnValues,
    EngineContext,
    ModelColumnGenerator,
    gather_or_cancel,
)
from gristmill.errors import ModelAuthError, ModelError
from gristmill.llm.cache import ResponseCache
from gristmill.llm.embeddings import EmbeddingAnswer, embed, embedding_body, embedding_handle

logger = logging.getLogger("gristmill")


@dataclass
class _Batch:
    """One batch of one column: its texts (with the rows holding each), their cache keys, the
    vectors found so far (float32 bytes) and the texts that failed (with why)."""

    rows_of: dict[str, list[int]]
    keys: dict[str, str]
    vectors: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def rows(self, texts: Iterable[str]) -> int:
        return sum(len(self.rows_of[text]) for text in texts)


class EmbeddingGenerator(ModelColumnGenerator):
    """Generates one embedding column for each batch it is given."""

    generation_type = "embedding"

    def __init__(self, column: EmbeddingColumn, context: EngineContext) -> None:
        super().__init__(column, context)
        self.column = column
        self.handle = embedding_handle(self.handle)
        dim = column.dimensions
        self.arrow_type = pa.list_(pa.float32(), dim) if dim is not None else pa.list_(pa.float32())

    async def generate(self, frame: BatchFrame) -> dict[str, ColumnValues]:
        rows_of = self._texts(frame)
        self.progress.cells_done(frame.num_rows - sum(len(rows) for rows in rows_of.values()))
        batch = _Batch(rows_of, {text: self._key(text) for text in rows_of})
        if self.cache is not None and batch.keys:
            cached = self.cache.get_many(list(batch.keys.values()))
            for text, key in batch.keys.items():
                if key in cached:
                    batch.vectors[text] = base64.b64decode(cached[key])
            self.usage["cache_hits"] += len(batch.vectors)
            self.progress.cells_done(batch.rows(batch.vectors))
        missing = [text for text in rows_of if text not in batch.vectors]
        size = self.column.batch_size
        await _all([self._request(missing[i:i + size], batch) for i in range(0, len(missing), size)])
        for text, reason in batch.failures.items():
            for row in rows_of[text]:
                frame.fail(row, reason, 1)
        if batch.failures:
            first = next(iter(batch.failures.values()))
            logger.warning("gristmill: %d of %d texts of embedding column %r (batch %d, model %r) failed; "
                           "first error: %s", len(batch.failures), len(missing), self.column.name,
                           frame.batch_index, self.handle.alias, first)
        if missing and self.errors.tripped():
            raise self._stop_error()
        values: list[Any] = [None] * frame.num_rows
        for text, rows in rows_of.items():
            if text in batch.vectors:
                vector = np.frombuffer(batch.vectors[text], dtype="<f4")
                for row in rows:
                    values[row] = vector
        return {self.column.name: _to_arrow(values, self.arrow_type)}

    def _texts(self, frame: BatchFrame) -> dict[str, list[int]]:
        """Active rows by text; a row with nothing to embed fails its cell here."""
        column = self.column
        values = frame.pylist(column.target_column)
        rows_of: dict[str, list[int]] = {}
        for row in frame.active_rows():
            text = _as_text(values[row])
            if text is None or not text.strip():
                what = "null" if text is None else "empty"
                frame.fail(row, f"target column {column.target_column!r} is {what}; nothing to embed", 0)
                continue  # done, counted with the skipped rows
            rows_of.setdefault(text, []).append(row)
        return rows_of

    def request_keys(self, frame: BatchFrame, rows: list[int]) -> dict[int, str]:
        """The cache key of each of ``rows`` that has text to embed (a null or empty one sends
        nothing); rows with the same text share a key and a place in one request. For the bill."""
        values = frame.pylist(self.column.target_column)
        texts = {row: _as_text(values[row]) for row in rows}
        return {row: self._key(text) for row, text in texts.items() if text is not None and text.strip()}

    def _key(self, text: str) -> str:
        """The cache key of ``text``: the body of a one-text request, whatever the batching."""
        model = self.handle.resolved
        body = embedding_body(model.model.model, [text], dimensions=self.column.dimensions,
                              extra_body=model.provider.extra_body)
        if self.column.pooling != "none":
            body["pooling"] = self.column.pooling
        return ResponseCache.key(identity=self.handle.identity, body=body, column=self.cache_column, row=0)

    async def _request(self, texts: list[str], batch: _Batch) -> None:
        """Embed ``texts`` in one request; a refused request of several is split in halves."""
        rows = batch.rows(texts)
        self.progress.waiting(self.handle.throttle, rows)
        try:
            answer = await embed(self.handle, texts, dimensions=self.column.dimensions, usage=self.usage)
        except ModelAuthError:
            raise
        except ModelError as exc:
            self._failed(texts, str(exc), batch)
            self.progress.cells_done(rows)
            return
        finally:
            self.progress.waiting(self.handle.throttle, -rows)
        if answer.rejected:
            half = len(texts) // 2
            self.usage["split_requests"] += 1
            await _all([self._request(texts[:half], batch), self._request(texts[half:], batch)])
            return
        self._store(texts, answer, batch)
        self.progress.cells_done(rows)

    def _store(self, texts: list[str], answer: EmbeddingAnswer, batch: _Batch) -> None:
        """Check and cache each vector. No await here: the answers are stored before another
        request can take the slot this one freed (what a crash can cost)."""
        for text, raw in zip(texts, answer.vectors, strict=True):
            vector, problem = self._vector(raw)
            if vector is None:
                self._failed([text], f"model {self.handle.alias!r} answered an unusable vector: {problem}", batch)
                continue
            self.errors.record(True)
            data = vector.astype("<f4").tobytes()
            batch.vectors[text] = data
            if self.cache is not None:
                self.cache.put(batch.keys[text], base64.b64encode(data).decode("ascii"), column=self.cache_column)
        self.usage["embedded_texts"] += len(texts)

    def _vector(self, raw: Any) -> tuple[np.ndarray | None, str]:
        """The float vector of one answer entry, or None and what is wrong with it."""
        try:
            array = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            return None, "not a list of numbers"
        if array.ndim == 2 and self.column.pooling == "mean" and array.shape[0] > 0:
            array = array.mean(axis=0)
        elif array.ndim == 2:
            return None, (f"{array.shape[0]} vectors, one per token (the server does not pool them); set "
                          "pooling: mean and batch_size: 1 on the column, or serve the model with a pooling type")
        if array.ndim != 1 or array.size == 0:
            return None, f"an array of shape {array.shape}, not a vector"
        if not np.isfinite(array).all():
            return None, "it holds NaN or infinite numbers"
        dim = self.column.dimensions
        if dim is not None and array.size != dim:
            return None, (f"{array.size} numbers, but the column's dimensions is {dim}; the model may not "
                          "support 'dimensions': remove it, or set it to the model's own size")
        return array, ""

    def _failed(self, texts: Iterable[str], reason: str, batch: _Batch) -> None:
        for text in texts:
            batch.failures[text] = " ".join(reason.split())
            self.usage["failures"] += 1
            if self.errors.record(False, reason):
                raise self._stop_error()

    def _stop_error(self) -> ModelError:
        return ModelError(
            f"stopping: {self.errors.failures} of the last {len(self.errors.outcomes)} texts of embedding column "
            f"{self.column.name!r} failed on model {self.handle.alias!r}; last error: {self.errors.last_error}. "
            + ("Nothing was written; fix the endpoint and preview again." if self.previewing else
               "Completed batches are kept; fix the endpoint and resume."))


async def _all(requests: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``requests`` concurrently; on the first error cancel the rest (their stored answers stay)."""
    await gather_or_cancel([asyncio.ensure_future(r) for r in requests])


def _as_text(value: Any) -> str | None:
    """The text to embed for a cell: strings as they are, other values as JSON (None stays None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _to_arrow(values: list[np.ndarray | None], arrow_type: pa.DataType) -> pa.Array:
    """``list<float32>`` (or the fixed-size list) with nulls where there is no vector."""
    offsets = [0]
    parts: list[np.ndarray] = []
    for vector in values:
        if vector is not None:
            parts.append(vector)
        offsets.append(offsets[-1] + (0 if vector is None else len(vector)))
    flat = pa.array(np.concatenate(parts) if parts else np.zeros(0, dtype="<f4"), type=pa.float32())
    mask = pa.array([v is None for v in values])
    if isinstance(arrow_type, pa.FixedSizeListType):
        width = arrow_type.list_size
        # Null slots of a fixed-size list still take their width in the child array.
        filled = [v if v is not None else np.zeros(width, dtype="<f4") for v in values]
        child = pa.array(np.concatenate(filled) if filled else np.zeros(0, dtype="<f4"), type=pa.float32())
        return pa.FixedSizeListArray.from_arrays(child, width, mask=mask)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), flat, mask=mask)
