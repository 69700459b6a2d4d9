"""``FunctionModel``: an in-process model whose answers come from a Python function.

No socket, no thread: the function runs on the Mill's event loop for every request, so tests of
LLM columns, the response cache, retries and Retry-After run fast and deterministically::

    fm = FunctionModel(lambda request: f"Echo: {request.prompt}")
    with gm.Mill(tmp_path, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                 clients={fm.name: fm}) as mill:
        mill.create(cfg, num_records=10)
    assert len(fm.calls) == 10

The function gets a :class:`ChatRequest` and returns (or, when it is ``async``, resolves to) an
answer: a ``str``; a dict or list, sent as its JSON; a :class:`~gristmill.llm.types.Completion`
(reasoning, exact token counts); or a :class:`FailedResponse` (a 429 with ``Retry-After``, a
5xx, a timeout), which the runtime retries as it would an endpoint's. Raising a ``ModelError``
fails the cell at once (``ModelAuthError`` stops the run, ``ModelRateLimitError`` counts as a
429); any other exception is a bug in the test and propagates.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from gristmill.errors import ModelAuthError, ModelError, ModelRateLimitError
from gristmill.llm.types import (
    Attempt,
    Completion,
    Message,
    Outcome,
    RequestBody,
    body_json_schema,
    chat_body,
    classify_status,
)

if TYPE_CHECKING:  # config models load pydantic and jinja2: only the helpers that build them need them
    from gristmill.config.models import ModelConfig, ModelProvider


@dataclass(frozen=True)
class ChatRequest:
    """One request as the model receives it (a correction is a new request)."""

    model: str  #: the model name of the alias's ModelConfig
    messages: tuple[Message, ...]  #: system, user, and for corrections earlier assistant/user turns
    json_schema: dict[str, Any] | None  #: the column's schema (llm_structured, llm_judge), else None
    body: RequestBody  #: the full body, parameters included (what the response cache keys on)

    @property
    def prompt(self) -> str:
        """The content of the last user message: the rendered prompt, or a correction."""
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")

    @property
    def system(self) -> str | None:
        """The system prompt, if the request has one."""
        return next((m["content"] for m in self.messages if m.get("role") == "system"), None)

    @property
    def corrections(self) -> int:
        """How many answers of this cell were sent back before (0 for the first request)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")


@dataclass(frozen=True)
class FailedResponse:
    """What an endpoint answers instead of a completion; the runtime treats it as it would
    that HTTP status (429 and 5xx are retried, 401/403 stop the run, other 4xx fail the cell).

    ``status=None`` is a transport failure (timeout, connection reset): retried.
    """

    status: int | None
    message: str = "simulated failure"
    retry_after: float | None = None  #: seconds, as a Retry-After header would say

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> FailedResponse:
        """A 429, with ``Retry-After: retry_after`` when given."""
        return cls(429, "rate limited", retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> FailedResponse:
        """A transient 5xx."""
        return cls(status, f"server error {status}")

    def attempt(self) -> Attempt:
        outcome = Outcome.TRANSIENT if self.status is None else classify_status(self.status)
        return Attempt(outcome, status=self.status, message=self.message, retry_after=self.retry_after)


Answer: TypeAlias = str | dict[str, Any] | list[Any] | Completion | FailedResponse
AnswerFunction: TypeAlias = Callable[[ChatRequest], Answer | Awaitable[Answer]]


class FunctionModel:
    """A :class:`~gristmill.llm.types.ChatClient` answering each request with ``function(request)``.

    ``calls`` lists every request received, in order, failed attempts and corrections included:
    what an endpoint would have billed. Token counts, unless a ``Completion`` gives them, are an
    estimate of one token per four characters (at least one).

    >>> import asyncio
    >>> fm = FunctionModel(lambda request: {"answer": request.prompt.upper()})
    >>> body = fm.build_body("m", [{"role": "user", "content": "hi"}], params={}, json_schema=None)
    >>> asyncio.run(fm.send(body, timeout=1)).completion.content
    '{"answer": "HI"}'
    >>> len(fm.calls)
    1
    """

    def __init__(self, function: AnswerFunction, *, name: str = "function") -> None:
        self.function = function
        self.name = name  #: the provider name to key this client by in ``clients=``
        self.calls: list[ChatRequest] = []

    def provider(self) -> ModelProvider:
        """A ModelProvider named :attr:`name` (no endpoint or key: this client needs neither)."""
        from gristmill.config.models import ModelProvider

        return ModelProvider(name=self.name)

    def model_config(self, alias: str = "default", *, model: str = "function-model", **fields: Any) -> ModelConfig:
        """A ModelConfig for ``alias`` on this provider (``fields``: max_retries, retry_backoff, ...)."""
        from gristmill.config.models import ModelConfig

        return ModelConfig(alias=alias, model=model, provider=self.name, **fields)

    def build_body(self, model: str, messages: list[Message], *, params: dict[str, Any],
                   json_schema: dict[str, Any] | None) -> RequestBody:
        return chat_body(model, messages, params=params, json_schema=json_schema)

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        request = ChatRequest(model=str(body.get("model", "")), messages=tuple(body.get("messages", ())),
                              json_schema=body_json_schema(body), body=body)
        self.calls.append(request)
        try:
            answer = await self._answer(request, timeout)
        except TimeoutError:
            return Attempt(Outcome.TRANSIENT, message=f"timeout after {timeout:g} s")
        except ModelError as exc:
            return _error_attempt(exc)
        return _answer_attempt(answer, request)

    async def _answer(self, request: ChatRequest, timeout: float) -> Answer:
        result = self.function(request)
        if inspect.isawaitable(result):
            # An async function may sleep (latency, concurrency tests): held to the model's timeout.
            return await asyncio.wait_for(_resolve(result), timeout)
        return result

    async def aclose(self) -> None:
        return None


async def _resolve(result: Awaitable[Answer]) -> Answer:
    return await result


def _error_attempt(exc: ModelError) -> Attempt:
    """A raised ModelError as the attempt an endpoint's refusal would be."""
    if isinstance(exc, ModelAuthError):
        return Attempt(Outcome.AUTH, status=401, message=str(exc))
    if isinstance(exc, ModelRateLimitError):
        return Attempt(Outcome.RATE_LIMITED, status=429, message=str(exc))
    return Attempt(Outcome.REJECTED, status=400, message=str(exc))


def _answer_attempt(answer: Answer, request: ChatRequest) -> Attempt:
    """A returned answer as a successful attempt (or the failure it stands for)."""
    if isinstance(answer, FailedResponse):
        return answer.attempt()
    if isinstance(answer, Completion):
        return Attempt(Outcome.OK, completion=answer, status=200)
    if isinstance(answer, dict | list):
        answer = json.dumps(answer)
    if not isinstance(answer, str):
        raise TypeError(f"a FunctionModel function must return str, dict, list, Completion or FailedResponse, "
                        f"not {type(answer).__name__}")
    prompt_chars = sum(len(m.get("content", "")) for m in request.messages)
    completion = Completion(content=answer, input_tokens=_tokens(prompt_chars), output_tokens=_tokens(len(answer)))
    return Attempt(Outcome.OK, completion=completion, status=200)


def _tokens(chars: int) -> int:
    """A deterministic token estimate: about four characters per token, at least one."""
    return max(1, (chars + 3) // 4)
