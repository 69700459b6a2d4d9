"""Embeddings over an OpenAI-compatible ``POST /embeddings`` endpoint, several texts per request.

The request goes through the runtime's :class:`~gristmill.llm.runtime.ModelHandle`, so it gets
everything a chat request gets: the model's shared AIMD throttle, ``Retry-After``, retries of
5xx answers, timeouts and connection errors, usage counters. :class:`EmbeddingsEndpoint` is the
transport the handle drives in place of the chat client: it posts to ``/embeddings`` over the
provider's own connection pool (our HTTP client, ``llm/http.py``) and reads the vectors.

A request of several texts that the endpoint refuses (a 4xx other than 401/403/408/409/429:
one text too long, say) is not a failure of every text: it comes back as an
:class:`EmbeddingAnswer` with ``rejected`` set, and the caller splits the texts to find the one
at fault. A refused single text fails with ``ModelError`` as a refused chat request does.

>>> body = embedding_body("text-embedding-3-small", ["a", "b"], dimensions=8, extra_body={})
>>> body
{'model': 'text-embedding-3-small', 'input': ['a', 'b'], 'dimensions': 8}
"""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from gristmill.errors import ModelError
from gristmill.llm.runtime import ModelHandle, ProviderEndpoint, Usage, endpoint_handle
from gristmill.llm.types import Attempt, Completion, Outcome, RequestBody

EMBEDDINGS_PATH = "/embeddings"

Vector = list[float]


@dataclass(frozen=True, slots=True)
class EmbeddingAnswer(Completion):
    """What one embeddings request returned: per text, a vector (``list[float]``) or, from endpoints
    that do not pool, one vector per token (``list[list[float]]``); or ``rejected``, the endpoint's
    reason for refusing a request of several texts."""

    vectors: tuple[Any, ...] = ()
    rejected: str = ""


def embedding_body(model: str, texts: list[str], *, dimensions: int | None,
                   extra_body: dict[str, Any]) -> RequestBody:
    """The JSON body of one request: ``dimensions`` only when set (endpoints that do not know it
    may refuse it)."""
    body: RequestBody = {"model": model, "input": texts, **extra_body}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def parse_embeddings(raw: bytes, count: int) -> Attempt:
    """An OpenAI embeddings response as an Attempt holding an :class:`EmbeddingAnswer`. A body
    without ``count`` entries in ``data`` is malformed: TRANSIENT, so it is retried."""
    try:
        data = json.loads(raw)
        entries = data["data"]
        if not isinstance(entries, list) or len(entries) != count:
            raise ValueError(f"{len(entries) if isinstance(entries, list) else 'no'} vectors for {count} texts")
        # Entries carry their input's index; servers need not keep the order.
        ordered = sorted(entries, key=lambda e: int(e.get("index", 0))) if all(
            isinstance(e, dict) and "index" in e for e in entries) else entries
        vectors = tuple(_decode(entry["embedding"]) for entry in ordered)
    except (ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        return Attempt(Outcome.TRANSIENT, status=200,
                       message=f"malformed embeddings body ({exc}): {raw[:200].decode('utf-8', 'replace')!r}")
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    count_tokens = int(tokens) if isinstance(tokens, int | float) and not isinstance(tokens, bool) \
        and math.isfinite(tokens) and tokens >= 0 else 0
    return Attempt(Outcome.OK, completion=EmbeddingAnswer(content="", input_tokens=count_tokens, vectors=vectors),
                   status=200)


def _decode(value: Any) -> Any:
    """A vector as sent: a list of numbers, a list of lists (per token), or base64 float32."""
    if isinstance(value, str):
        raw = base64.b64decode(value)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if not isinstance(value, list):
        raise TypeError(f"an embedding is a {type(value).__name__}")
    return value


class EmbeddingsEndpoint(ProviderEndpoint):
    """The ``/embeddings`` endpoint of one OpenAI-compatible provider."""

    kind = "embedding"

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        texts = body.get("input")
        count = len(texts) if isinstance(texts, list) else 1
        attempt = await self.client.post(EMBEDDINGS_PATH, body, lambda raw: parse_embeddings(raw, count),
                                         timeout=timeout)
        if attempt.outcome is Outcome.REJECTED and count > 1:
            # Not the request's fault as a whole: the caller splits it to find the text at fault.
            return Attempt(Outcome.OK, completion=EmbeddingAnswer(content="", rejected=attempt.message),
                           status=attempt.status)
        return attempt


def embedding_handle(handle: ModelHandle) -> ModelHandle:
    """``handle``'s model, throttle and retries, sending to its provider's ``/embeddings``
    (ConfigError unless the provider is OpenAI-compatible)."""
    return endpoint_handle(handle, EmbeddingsEndpoint, needs="embeddings need", advice=(
        "; for a local model, run llama.cpp's server with embeddings on and point a provider at it "
        "(docs/embeddings.md)"))


async def embed(handle: ModelHandle, texts: list[str], *, dimensions: int | None, usage: Usage) -> EmbeddingAnswer:
    """The embeddings of ``texts`` in one request (with the handle's throttle and retries).

    ``handle`` comes from :func:`embedding_handle`. Raises ``ModelError`` when the request fails
    for good; a refused request of several texts returns with ``rejected`` set instead."""
    config = handle.resolved
    body = embedding_body(config.model.model, texts, dimensions=dimensions, extra_body=config.provider.extra_body)
    answer = await handle.complete(body, usage)
    if not isinstance(answer, EmbeddingAnswer):
        raise ModelError(f"model alias {handle.alias!r}: the client answered an embeddings request with a "
                         f"{type(answer).__name__}")
    return answer
