"""The OpenAI-compatible chat-completions client (OpenAI, vLLM, llama.cpp server, ...)."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

from gristmill.config.models import ModelProvider
from gristmill.llm.http import ConnectionPool, HTTPConnectError, HTTPTimeout, HTTPTransportError
from gristmill.llm.secrets import clip, env_var_name, provider_secrets, resolve_api_key
from gristmill.llm.types import Attempt, Completion, Message, Outcome, RequestBody, ToolCall, classify_status

# env_var_name and resolve_api_key live in llm.secrets; importable from here as before.
__all__ = ["OpenAIClient", "env_var_name", "parse_completion", "parse_retry_after", "resolve_api_key"]

# Characters of an error text we look at: far more than we keep (secrets.MESSAGE_LIMIT), so
# redaction sees a key whole before the text is cut, but bounded against a megabyte error page.
_ERROR_SCAN = 64 * 1024

def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, fractional tolerated, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def _error_message(body: bytes) -> str:
    """The endpoint's error text, whole: it is redacted before it is cut (see ``secrets.clip``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:_ERROR_SCAN].decode("utf-8", "replace").strip()
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or error
    return str(error)[:_ERROR_SCAN]


class OpenAIClient:
    """Chat completions over one keep-alive connection pool per provider."""

    def __init__(self, provider: ModelProvider) -> None:
        self.provider = provider
        self.pool = ConnectionPool(provider.endpoint, headers=provider.extra_headers)

    def build_body(self, model: str, messages: list[Message], *, params: dict[str, Any],
                   json_schema: dict[str, Any] | None) -> RequestBody:
        body: RequestBody = {"model": model, "messages": messages, **params, **self.provider.extra_body}
        if json_schema is not None:
            mode = self.provider.structured_output
            if mode == "json_schema":
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": json_schema}}
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": json_schema}
        return body

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        return await self.post("/chat/completions", body, parse_completion, timeout=timeout)

    async def post(self, path: str, body: RequestBody, parse: Callable[[bytes], Attempt], *,
                   timeout: float) -> Attempt:
        """POST ``body`` as JSON to ``path`` over the provider's pool, once: a 200 answer is read by
        ``parse``; anything else is an attempt classified for the runtime's retry loop. Chat,
        embeddings and images all go through here."""
        key = resolve_api_key(self.provider)
        attempt = await self._post(path, body, parse, key, timeout=timeout)
        if not attempt.message:
            return attempt
        # Every message goes out redacted, then cut: servers quote credentials in error texts.
        return dataclasses.replace(attempt, message=clip(attempt.message, provider_secrets(self.provider, key)))

    async def _post(self, path: str, body: RequestBody, parse: Callable[[bytes], Attempt], key: str | None, *,
                    timeout: float) -> Attempt:
        """Send once with ``key``; the attempt's message is not redacted yet."""
        headers = f"Authorization: Bearer {key}\r\n" if key else ""
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await self.pool.request("POST", path, data, timeout=timeout, headers=headers)
        except HTTPTimeout as exc:
            return Attempt(Outcome.TRANSIENT, message=f"timeout: {exc}")
        except HTTPConnectError as exc:
            return Attempt(Outcome.TRANSIENT, message=str(exc))
        except HTTPTransportError as exc:
            return Attempt(Outcome.TRANSIENT, message=f"connection error: {exc}")
        if response.status != 200:
            return Attempt(classify_status(response.status), status=response.status,
                           message=f"HTTP {response.status}: {_error_message(response.body)}",
                           retry_after=parse_retry_after(response.headers.get("retry-after")))
        return parse(response.body)

    async def aclose(self) -> None:
        await self.pool.aclose()


def parse_completion(raw: bytes | dict[str, Any]) -> Attempt:
    """An OpenAI chat-completion body as an Attempt. A body without a usable message (not JSON,
    no choices, ``content`` neither text nor null) is malformed: TRANSIENT, so it is retried and
    then fails its cell, never the run."""
    try:
        data = json.loads(raw) if isinstance(raw, bytes) else raw
        message = data["choices"][0]["message"]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError(f"content is {type(content).__name__}")
        tool_calls = parse_tool_calls(message.get("tool_calls"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = raw[:200].decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)[:200]
        return Attempt(Outcome.TRANSIENT, status=200, message=f"malformed completion body: {text!r}")
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    details = usage.get("completion_tokens_details")
    details = details if isinstance(details, dict) else {}
    # Token counts are bookkeeping: a garbled one counts as 0 rather than losing a paid answer.
    completion = Completion(content=content or "",
                            reasoning=reasoning if isinstance(reasoning, str) else None,
                            input_tokens=_token_count(usage.get("prompt_tokens")),
                            output_tokens=_token_count(usage.get("completion_tokens")),
                            reasoning_tokens=_token_count(details.get("reasoning_tokens")),
                            tool_calls=tool_calls)
    return Attempt(Outcome.OK, completion=completion, status=200)


def parse_tool_calls(raw: object) -> tuple[ToolCall, ...]:
    """The ``tool_calls`` of an OpenAI message (None or [] for none); TypeError when malformed.
    ``arguments`` given as an object (some servers do) is kept as its JSON text."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TypeError("tool_calls is not a list")
    calls = []
    for index, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TypeError("a tool call has no function name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
        call_id = item.get("id")
        calls.append(ToolCall(id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
                              name=function["name"], arguments=arguments))
    return tuple(calls)


def _token_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return 0
    return int(value) if value != float("inf") else 0

