"""The ``remote`` validator: POST each chunk as JSON to an HTTP endpoint.

Request (``Content-Type: application/json``)::

    {"column": "sql_check", "targets": ["sql"],
     "rows": [{"row": 17, "values": {"sql": "SELECT 1"}}, ...]}

``row`` is the dataset-wide row index. The answer must be a 2xx with a JSON body holding one
result per row, in order::

    {"results": [{"is_valid": true, "messages": [{"target": "sql", "message": "...", "line": 1,
                  "code": "X1"}], "score": 0.9}, ...]}

(``messages`` and ``score`` optional; a message may also be a plain string). Connection errors,
timeouts, 5xx and 429 are retried ``max_retries`` times with doubling backoff (a 429's
``Retry-After`` is honoured, up to a minute); other answers are not retried. Rows of a chunk whose
request failed for good are failed cells, never ``is_valid: false``. Requests go through the
project's asyncio HTTP client (``llm/http.py``), at most ``max_parallel`` at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from gristmill.config.validation import RemoteValidatorParams, ValidationColumn
from gristmill.engine.validators.base import CellFailure, Chunk, Outcome, Verdict, messages_from, score_from
from gristmill.llm.http import ConnectionPool, HTTPResponse, HTTPTransportError

MAX_RETRY_AFTER = 60.0


class RequestFailed(Exception):
    """The chunk's request got no usable answer; every row of it fails."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.attempts = attempts


class RemoteValidator:
    def __init__(self, column: ValidationColumn, params: RemoteValidatorParams) -> None:
        parts = urlsplit(params.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.column = column.name
        self.default_target = column.target_columns[0] if len(column.target_columns) == 1 else None
        self.params = params
        self.max_parallel = params.max_parallel

    async def validate(self, chunk: Chunk) -> list[Outcome]:
        body = json.dumps({"column": self.column, "targets": list(chunk.targets),
                           "rows": [{"row": row, "values": values} for row, values in zip(chunk.row_ids, chunk.values,
                                                                                          strict=True)]},
                          default=str).encode()
        pool = ConnectionPool(self.origin)  # one per chunk: a pool is bound to the loop it ran on
        try:
            response, attempts = await self._post(pool, body)
            outcomes: list[Outcome] = list(self._results(response, len(chunk), attempts))
            return outcomes
        except RequestFailed as exc:
            return [CellFailure(f"validator endpoint {self.params.url}: {exc}", exc.attempts)
                    for _ in range(len(chunk))]
        finally:
            await pool.aclose()

    async def _post(self, pool: ConnectionPool, body: bytes) -> tuple[HTTPResponse, int]:
        """The first 2xx answer, retrying what may pass on a later try; RequestFailed otherwise."""
        attempts = self.params.max_retries + 1
        for attempt in range(1, attempts + 1):
            wait = self.params.retry_backoff * 2 ** (attempt - 1)
            try:
                response = await pool.request("POST", self.path, body, timeout=self.params.timeout)
            except (HTTPTransportError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.status < 300:
                    return response, attempt
                reason = f"HTTP {response.status}: {response.body[:200].decode('utf-8', errors='replace')}"
                if response.status != 429 and response.status < 500:
                    raise RequestFailed(reason, attempt)
                wait = max(wait, _retry_after(response))
            if attempt < attempts:
                await asyncio.sleep(wait)
        raise RequestFailed(f"no answer after {attempts} attempt(s); last: {reason}", attempts)

    def _results(self, response: HTTPResponse, n: int, attempts: int) -> list[Verdict]:
        try:
            data = json.loads(response.body)
            results = data.get("results") if isinstance(data, dict) else data
            if not isinstance(results, list) or len(results) != n:
                raise ValueError(f"expected {{\"results\": [...]}} with {n} result(s), got {_short(data)}")
            return [self._verdict(item) for item in results]
        except ValueError as exc:  # JSON errors too: the service answered, but not in the format
            raise RequestFailed(f"unusable answer: {exc}", attempts) from None

    def _verdict(self, item: Any) -> Verdict:
        if not isinstance(item, dict) or not isinstance(item.get("is_valid"), bool):
            raise ValueError(f"each result needs a boolean 'is_valid', got {_short(item)}")
        messages = messages_from(item.get("messages"), self.default_target)
        return Verdict(item["is_valid"], tuple(messages), score_from(item.get("score")))


def _retry_after(response: HTTPResponse) -> float:
    try:
        return min(max(float(response.headers.get("retry-after", 0)), 0.0), MAX_RETRY_AFTER)
    except ValueError:  # an HTTP date: use the backoff
        return 0.0


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:200] + "..."
