"""Values passed between the LLM client, the runtime and the generators, and the client seam.

:class:`ChatClient` is the stable seam between gristmill and a model: the built-in OpenAI and
local clients implement it, and so can yours (``Mill(..., clients={"provider-name": client})``;
``gristmill.testing.FunctionModel`` is one for tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol, runtime_checkable

# A chat message: {"role": ..., "content": ...}. Content is text, or a list of OpenAI content parts
# ({"type": "text", ...}, {"type": "image_url", ...}, {"type": "input_audio", ...}) for multimodal input.
Message = dict[str, Any]
RequestBody = dict[str, Any]
# One message of a trace, as a trace column stores it: {"role", "content", "reasoning"}, all text
# (reasoning None where the message has none).
TraceEntry = dict[str, str | None]
TraceKind = Literal["none", "last_message", "all_messages"]


class Outcome(Enum):
    """How one attempt at a request ended, which decides what happens next."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"  # 429: shrink concurrency, wait Retry-After, retry
    TRANSIENT = "transient"  # 5xx, timeout, connection error: back off and retry
    AUTH = "auth"  # 401/403: nothing will work; stop the run
    REJECTED = "rejected"  # other 4xx: this cell fails with the endpoint's message


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model asks to call: the id its answer must quote, the tool, the arguments as the
    JSON text the model wrote (parsed by the tool loop, which tells the model when they are not JSON)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A successful answer: content with any reasoning still in it, and token counts.
    ``reasoning_tokens`` is the part of ``output_tokens`` the endpoint says went to reasoning
    (``usage.completion_tokens_details.reasoning_tokens``), 0 where it does not say."""

    content: str
    reasoning: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: tuple[ToolCall, ...] = ()  # when the model asks for tools (offered with ``tools``) instead


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of sending a request once."""

    outcome: Outcome
    completion: Completion | None = None
    status: int | None = None  # HTTP status, None for transport failures
    message: str = ""  # the endpoint's error message
    retry_after: float | None = None  # seconds, from Retry-After


@dataclass
class Conversation:
    """The messages of one cell: the request's own, then every turn exchanged after them (each
    answer, each correction; a tool-using column adds its calls and results the same way).

    ``messages`` is what the next request sends; :meth:`turns` is what the response cache stores
    beside the answer and what a trace shows after the request's messages.

    >>> talk = Conversation([{"role": "user", "content": "hi"}])
    >>> talk.add({"role": "assistant", "content": "hello"}, reasoning="greet back")
    >>> talk.turns()
    [{'role': 'assistant', 'content': 'hello', 'reasoning': 'greet back'}]
    """

    messages: list[Message]
    requests: int = 0  # answers received (each correction is one more)
    input_tokens: int = 0  # over every answer received, as the endpoint counted them
    output_tokens: int = 0
    first: int = field(init=False)  # how many messages the first request sent
    reasoning: dict[int, str] = field(default_factory=dict)  # message index -> the reasoning behind it

    def __post_init__(self) -> None:
        self.messages = list(self.messages)
        self.first = len(self.messages)

    def add(self, message: Message, *, reasoning: str | None = None) -> None:
        """Append a message exchanged after the first request (kept for the next request and the trace)."""
        if reasoning:
            self.reasoning[len(self.messages)] = reasoning
        self.messages.append(message)

    def answered(self, completion: Completion) -> None:
        """Count one answer received (its tokens too)."""
        self.requests += 1
        self.input_tokens += completion.input_tokens
        self.output_tokens += completion.output_tokens

    def turns(self) -> list[TraceEntry]:
        """The messages exchanged after the first request, as trace entries."""
        return [trace_entry(m, self.reasoning.get(i)) for i, m in enumerate(self.messages) if i >= self.first]


def trace_entry(message: Message, reasoning: str | None = None) -> TraceEntry:
    """A message as a trace stores it: content as text (see :func:`content_text`); tool calls, when
    a message has them, as JSON after the content."""
    content = content_text(message.get("content"))
    calls = message.get("tool_calls")
    if calls:
        content = "\n".join(filter(None, (content, json.dumps(calls, ensure_ascii=False, sort_keys=True))))
    return {"role": str(message.get("role", "")), "content": content, "reasoning": reasoning}


def content_text(content: Any) -> str:
    r"""Message content as text: text parts as they are, an image or audio part as a short marker
    (``[image: https://...]``, ``[image: image/png, 12.3 kB]``, ``[audio: wav, 40.0 kB]``), so a
    trace never holds the base64 data itself.

    >>> content_text([{"type": "text", "text": "Describe it."},
    ...               {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    'Describe it.\n[image: image/png, 0.0 kB]'
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return json.dumps(content, ensure_ascii=False, default=str)
    return "\n".join(_part_text(part) for part in content)


def _part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return str(part)
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    if kind == "image_url":
        url = str((part.get("image_url") or {}).get("url", ""))
        if url.startswith("data:"):
            media_type, _, data = url[5:].partition(";base64,")
            return f"[image: {media_type}, {len(data) * 3 / 4 / 1000:.1f} kB]"
        return f"[image: {url}]"
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        return f"[audio: {audio.get('format', '?')}, {len(str(audio.get('data', ''))) * 3 / 4 / 1000:.1f} kB]"
    return f"[{kind}]"


def trace_of(messages: list[Message], turns: list[TraceEntry], kind: TraceKind) -> list[TraceEntry] | None:
    """The trace of a cell: the request's ``messages`` then its ``turns`` (``all_messages``), only
    the final answer (``last_message``), or None (``none``)."""
    if kind == "none":
        return None
    if kind == "last_message":
        answers = [entry for entry in turns if entry["role"] == "assistant"]
        return answers[-1:]
    return [trace_entry(m) for m in messages] + list(turns)


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
