"""Values passed between the LLM client, the runtime and the generators, and the client seam.

:class:`ChatClient` is the stable seam between gristmill and a model: the built-in OpenAI and
local clients implement it, and so can yours (``Mill(..., clients={"provider-name": client})``;
``gristmill.testing.FunctionModel`` is one for tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]
RequestBody = dict[str, Any]


class Outcome(Enum):
    """How one attempt at a request ended, which decides what happens next."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"  # 429: shrink concurrency, wait Retry-After, retry
    TRANSIENT = "transient"  # 5xx, timeout, connection error: back off and retry
    AUTH = "auth"  # 401/403: nothing will work; stop the run
    REJECTED = "rejected"  # other 4xx: this cell fails with the endpoint's message


@dataclass(frozen=True, slots=True)
class Completion:
    """A successful answer: content with any reasoning still in it, and token counts."""

    content: str
    reasoning: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of sending a request once."""

    outcome: Outcome
    completion: Completion | None = None
    status: int | None = None  # HTTP status, None for transport failures
    message: str = ""  # the endpoint's error message
    retry_after: float | None = None  # seconds, from Retry-After


def classify_status(status: int) -> Outcome:
    """The outcome an HTTP error status stands for (what the runtime does next depends on it)."""
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in (401, 403):
        return Outcome.AUTH
    if status >= 500 or status in (408, 409):
        return Outcome.TRANSIENT
    return Outcome.REJECTED


def chat_body(model: str, messages: list[Message], *, params: dict[str, Any],
              json_schema: dict[str, Any] | None) -> RequestBody:
    """An OpenAI-style chat body: model, messages, parameters, and the schema (if any) as a
    ``json_schema`` response format. A ready-made ``build_body`` for clients of your own.

    >>> chat_body("m", [{"role": "user", "content": "hi"}], params={"temperature": 0}, json_schema=None)
    {'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}], 'temperature': 0}
    """
    body: RequestBody = {"model": model, "messages": messages, **params}
    if json_schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": json_schema}}
    return body


def body_json_schema(body: RequestBody) -> dict[str, Any] | None:
    """The JSON schema a body built by :func:`chat_body` asks for (None for plain text)."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    schema = response_format.get("schema") or (response_format.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


@runtime_checkable
class ChatClient(Protocol):
    """What a model client implements: build a request body, send it once, close.

    The runtime owns everything around it (throttling, retries, Retry-After, the response cache,
    parsing, usage), so a client stays small. To write one:

    - ``build_body`` returns the complete request as JSON-able data. It is also the response
      cache's key, so it must be deterministic and hold everything that changes the answer;
      :func:`chat_body` is a ready-made one.
    - ``send`` sends once and reports endpoint trouble in the returned :class:`Attempt` instead
      of raising: ``Outcome.RATE_LIMITED`` (with ``retry_after``) and ``Outcome.TRANSIENT``
      are retried, ``Outcome.AUTH`` stops the run, ``Outcome.REJECTED`` fails the cell;
      :func:`classify_status` maps an HTTP status. A ``ModelError`` it raises fails the cell
      (``ModelAuthError`` stops the run); any other exception is a bug and propagates.
      Token counts go in the :class:`Completion`.
    - ``aclose`` releases connections at the end of each run's event loop; the client must
      stay usable afterwards (reopen on demand). One client serves every model of its provider,
      concurrently, on one event loop.

    >>> class Shout:
    ...     def build_body(self, model, messages, *, params, json_schema):
    ...         return chat_body(model, messages, params=params, json_schema=json_schema)
    ...     async def send(self, body, *, timeout):
    ...         return Attempt(Outcome.OK, Completion(body["messages"][-1]["content"].upper()))
    ...     async def aclose(self):
    ...         pass
    >>> isinstance(Shout(), ChatClient)
    True
    """

    def build_body(self, model: str, messages: list[Message], *, params: dict[str, Any],
                   json_schema: dict[str, Any] | None) -> RequestBody:
        """The full request body for ``model`` (it is also what the response cache keys on)."""
        ...

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        """Send once within ``timeout`` seconds; endpoint trouble is reported in the ``Attempt``."""
        ...

    async def aclose(self) -> None:
        """Release connections (the client stays usable)."""
        ...
