"""The OpenAI-compatible chat-completions client (OpenAI, vLLM, llama.cpp server, ...)."""

from __future__ import annotations

import email.utils
import json
import os
import time
from typing import Any

from gristmill.config.models import ModelProvider
from gristmill.errors import ModelAuthError
from gristmill.llm.http import ConnectionPool, HTTPConnectError, HTTPTimeout, HTTPTransportError
from gristmill.llm.types import Attempt, Completion, Message, Outcome, RequestBody, classify_status


def resolve_api_key(provider: ModelProvider) -> str | None:
    """The key itself: ``"$VAR"``/``"${VAR}"`` read from the environment now, else the literal."""
    key = provider.api_key
    if not key:
        return None
    name = env_var_name(key)
    if name is None:
        return key
    value = os.environ.get(name)
    if not value:
        raise ModelAuthError(f"provider {provider.name!r}: environment variable {name} is not set; "
                             f"export {name}=... (its api_key is {key!r})")
    return value


def env_var_name(api_key: str) -> str | None:
    """``"$OPENAI_API_KEY"`` -> ``"OPENAI_API_KEY"``; a literal key -> None."""
    if api_key.startswith("${") and api_key.endswith("}"):
        return api_key[2:-1]
    if api_key.startswith("$"):
        return api_key[1:]
    return None


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
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace").strip()
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:500]
    return str(error)[:500]


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
        key = resolve_api_key(self.provider)
        headers = f"Authorization: Bearer {key}\r\n" if key else ""
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await self.pool.request("POST", "/chat/completions", data, timeout=timeout,
                                               headers=headers)
        except HTTPTimeout as exc:
            return Attempt(Outcome.TRANSIENT, message=f"timeout: {exc}")
        except HTTPConnectError as exc:
            return Attempt(Outcome.TRANSIENT, message=str(exc))
        except HTTPTransportError as exc:
            return Attempt(Outcome.TRANSIENT, message=f"connection error: {exc}")
        if response.status != 200:
            message = _redact(_error_message(response.body), [key, *self.provider.extra_headers.values()])
            return Attempt(classify_status(response.status), status=response.status,
                           message=f"HTTP {response.status}: {message}",
                           retry_after=parse_retry_after(response.headers.get("retry-after")))
        return parse_completion(response.body)

    async def aclose(self) -> None:
        await self.pool.aclose()


def parse_completion(raw: bytes | dict[str, Any]) -> Attempt:
    """An OpenAI chat-completion body as an Attempt (REJECTED when it has no usable message)."""
    try:
        data = json.loads(raw) if isinstance(raw, bytes) else raw
        message = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        text = raw[:200].decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)[:200]
        return Attempt(Outcome.TRANSIENT, status=200, message=f"malformed completion body: {text!r}")
    usage = data.get("usage") or {}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    completion = Completion(content=message.get("content") or "",
                            reasoning=reasoning if isinstance(reasoning, str) else None,
                            input_tokens=int(usage.get("prompt_tokens") or 0),
                            output_tokens=int(usage.get("completion_tokens") or 0))
    return Attempt(Outcome.OK, completion=completion, status=200)


def _redact(message: str, secrets: list[str | None]) -> str:
    """``message`` with the API key and every extra header value replaced by ``***``."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
