"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It serves ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``POST /v1/images/generations``
and ``GET /v1/models`` with injectable trouble:
a fixed latency, a cap on concurrent requests beyond which it answers 429 with
``Retry-After``, a 5xx rate, a malformed-JSON rate, a schema-invalid rate, empty answers,
code answers without a fenced block, unclosed ``<think>`` reasoning, parameters refused
with 400, a fixed error status, an API key it insists on, and error messages that quote
the request's credentials (``echo_headers``, to prove clients redact them). Content is
deterministic, derived from the messages: plain text echoes the prompt, JSON asked for
through ``response_format`` (or an instruction with an embedded schema) gets an instance of
the schema, and a request for a fenced code block gets one. Embeddings are unit vectors of
``embedding_dimensions`` numbers (or the request's ``dimensions``) drawn from a hash of the model
and the text, so the same text always gets the same vector; the same trouble applies to them,
and a text containing ``fail_marker`` is refused with 400. Images are small PNGs drawn from a
hash of the model and the prompt (:func:`image_png`), with the same trouble and the same
``fail_marker`` refusal. ``GET /stats`` returns the
request counters, ``POST /control`` changes the behaviour, ``POST /reset`` zeroes them.

Responses go out in a single ``write`` on a socket with ``TCP_NODELAY``: otherwise Nagle's
algorithm and delayed ACKs add ~40 ms to every keep-alive response.

In-process (a thread with its own event loop)::

    with LLMTestServer(latency=0.05, max_concurrent=8) as server:
        provider = ModelProvider(name="test", endpoint=server.url)
        ...
        server.stats()["requests"]

As a process: ``python -m gristmill.testing.server --port 0 --latency 0.05``; the first
line printed is ``listening on http://127.0.0.1:<port>/v1``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}
_WORDS = ("amber basil cedar delta ember fjord grove harbor island juniper kestrel lumen meadow nectar "
          "orchid pebble quartz river saffron thistle umber violet willow xenon yarrow zephyr").split()
_CODE_RE = re.compile(r"```(\w+) fenced code block")
_SCHEMA_RE = re.compile(r"matching this JSON schema:\s*```json\s*(.*?)```", re.S)


@dataclass
class ServerBehavior:
    """What the server does; every field can be changed while it runs (``configure`` / ``/control``)."""

    latency: float = 0.0
    max_concurrent: int | None = None  # beyond this many in-flight completions: 429
    retry_after: float = 1.0  # seconds sent in the Retry-After header of a 429
    error_rate: float = 0.0  # share of completions answered 503
    malformed_rate: float = 0.0  # share of JSON answers cut in half
    invalid_rate: float = 0.0  # share of JSON answers that parse but miss the schema
    fail_status: int | None = None  # answer every completion with this status
    fail_message: str = "injected failure"
    api_key: str | None = None  # require 'Authorization: Bearer <api_key>'
    echo_headers: bool = False  # error messages quote the Authorization and X-* request headers (leak tests)
    reasoning: str = "none"  # "none" | "tags" (<think> in content) | "field" (reasoning_content)
    #                          | "unclosed" (a <think> never closed: cut off by max_tokens)
    empty_rate: float = 0.0  # share of answers with empty content
    fail_marker: str = ""  # answer an empty message (unusable for every column type) when the request contains it
    prose_rate: float = 0.0  # share of code answers given as prose, without a fenced block
    unsupported_params: str = ""  # comma-separated body fields answered 400 'Unsupported parameter'
    numeric_content_rate: float = 0.0  # share of answers whose message content is a number, not text
    text_usage: bool = False  # usage token counts sent as words ("many"), as a broken proxy might
    embedding_dimensions: int = 8  # length of embedding vectors when the request does not say
    tool_rounds: int = 0  # when the request offers tools: answers that call tools before one that answers
    tool_calls_per_turn: int = 1  # tool calls in each such answer (round k, call j: tool (k*n + j) % len(tools))
    seed: int = 0


@dataclass
class ServerStats:
    """Request counters. ``duplicates`` counts completions whose body was seen before."""

    requests: int = 0
    completions: int = 0  # 200 answers to chat completions
    rate_limited: int = 0
    errors: int = 0  # 5xx / fail_status answers
    unauthorized: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    duplicates: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    held_seconds: float = 0.0  # arrival to answer, summed over completions: the latency really delivered
    embeddings: int = 0  # 200 answers to embedding requests
    embedded_inputs: int = 0  # texts in those answers
    duplicate_inputs: int = 0  # texts answered that an earlier 200 embeddings answer had already embedded
    images: int = 0  # images in 200 answers to image requests
    duplicate_images: int = 0  # images answered for a request body an earlier 200 images answer had answered
    log: list[tuple[float, str, int]] = field(default_factory=list)  # (time, body hash, status)
    seen: set[str] = field(default_factory=set)
    seen_inputs: set[str] = field(default_factory=set)
    seen_images: set[str] = field(default_factory=set)


class _Handler(asyncio.Protocol):
    """HTTP/1.1 keep-alive connection: parse requests, hand them to the app, write each answer once."""

    def __init__(self, app: _App) -> None:
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            size = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + size:
                return
            body = bytes(self.buf[end + 4:end + 4 + size])
            del self.buf[:end + 4 + size]
            # Latency counts from arrival, so the server's own queueing does not add to it.
            self.app.handle(self, method, path, headers, body, asyncio.get_running_loop().time())

    def respond(self, status: int, payload: Any, extra_headers: str = "", close: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{extra_headers}"
                f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n")
        self.transport.write(head.encode("latin-1") + body)
        if close:
            self.transport.close()


class _App:
    def __init__(self, behavior: ServerBehavior, models: tuple[str, ...]) -> None:
        self.behavior = behavior
        self.models = models
        self.stats = ServerStats()
        self.rng = random.Random(behavior.seed)

    def handle(self, conn: _Handler, method: str, path: str, headers: dict[str, str], body: bytes,
               arrived: float) -> None:
        close = headers.get("connection", "").lower() == "close"
        path = path.split("?", 1)[0]
        if method == "POST" and path.endswith("/chat/completions"):
            self.complete(conn, headers, body, arrived, close)
        elif method == "POST" and path.endswith("/embeddings"):
            self.complete(conn, headers, body, arrived, close, embeddings=True)
        elif method == "POST" and path.endswith("/images/generations"):
            self.complete(conn, headers, body, arrived, close, images=True)
        elif method == "GET" and path.endswith("/models"):
            conn.respond(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]},
                         close=close)
        elif method == "GET" and path == "/stats":
            conn.respond(200, self.stats_dict(), close=close)
        elif method == "POST" and path == "/control":
            self.configure(**json.loads(body or b"{}"))
            conn.respond(200, asdict(self.behavior), close=close)
        elif method == "POST" and path == "/reset":
            self.stats = ServerStats()
            conn.respond(200, {}, close=close)
        else:
            conn.respond(404, {"error": {"message": f"no route {method} {path}"}}, close=close)

    def configure(self, **changes: Any) -> None:
        known = {f.name for f in fields(ServerBehavior)}
        for name, value in changes.items():
            if name not in known:
                raise TypeError(f"unknown server behaviour {name!r}")
            setattr(self.behavior, name, value)

    def stats_dict(self) -> dict[str, Any]:
        data = asdict(self.stats)
        data.pop("seen")
        data.pop("seen_inputs")
        data.pop("seen_images")
        data.pop("log")
        return data

    def complete(self, conn: _Handler, headers: dict[str, str], body: bytes, arrived: float,
                 close: bool, *, embeddings: bool = False, images: bool = False) -> None:
        """Decide the answer now; send it ``latency`` after arrival (a timer, not a task: cheap)."""
        s = self.stats
        s.requests += 1
        digest = hashlib.sha256(body).hexdigest()[:16]
        if digest in s.seen:
            s.duplicates += 1
        s.seen.add(digest)
        status, payload, extra, held = self._answer(headers, body, embeddings, images)
        s.log.append((time.monotonic(), digest, status))

        def send() -> None:
            if held:
                s.in_flight -= 1
            if status == 200 and conn.transport is not None and not conn.transport.is_closing():
                if embeddings:
                    self._count_embedded(payload)
                elif images:
                    self._count_images(payload)
                else:
                    s.completions += 1
                s.held_seconds += asyncio.get_running_loop().time() - arrived
            conn.respond(status, payload, extra, close)

        if held and self.behavior.latency > 0:
            asyncio.get_running_loop().call_at(arrived + self.behavior.latency, send)
        else:
            send()

    def _count_embedded(self, payload: dict[str, Any]) -> None:
        s = self.stats
        s.embeddings += 1
        for text in payload.pop("_inputs"):
            s.embedded_inputs += 1
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            s.duplicate_inputs += digest in s.seen_inputs
            s.seen_inputs.add(digest)

    def _count_images(self, payload: dict[str, Any]) -> None:
        s = self.stats
        for digest in payload.pop("_images"):
            s.images += 1
            s.duplicate_images += digest in s.seen_images
            s.seen_images.add(digest)

    def _answer(self, headers: dict[str, str], body: bytes, embeddings: bool = False,
                images: bool = False) -> tuple[int, Any, str, bool]:
        """(status, payload, extra headers, whether it holds a concurrency slot until sent)."""
        b, s = self.behavior, self.stats
        echo = ""
        if b.echo_headers:
            sent = {k: v for k, v in headers.items() if k == "authorization" or k.startswith("x-")}
            echo = " Request headers: " + ", ".join(f"{k}: {v}" for k, v in sorted(sent.items()))
        if b.api_key is not None and headers.get("authorization") != f"Bearer {b.api_key}":
            s.unauthorized += 1
            return 401, _error("Incorrect API key provided." + echo, "invalid_api_key"), "", False
        try:
            request = json.loads(body)
        except ValueError as exc:
            return 400, _error(f"request body is not JSON: {exc}", "invalid_request_error"), "", False
        for name in filter(None, (p.strip() for p in b.unsupported_params.split(","))):
            if name in request:
                return 400, _error(f"Unsupported parameter: '{name}' is not supported with this model.",
                                   "unsupported_parameter"), "", False
        if b.max_concurrent is not None and s.in_flight >= b.max_concurrent:
            s.rate_limited += 1
            return 429, _error("Rate limit reached; slow down.", "rate_limit_exceeded"), \
                f"Retry-After: {b.retry_after:g}\r\n", False
        s.in_flight += 1
        s.max_in_flight = max(s.max_in_flight, s.in_flight)
        if b.fail_status is not None:
            s.errors += 1
            return b.fail_status, _error(b.fail_message + echo, "injected"), "", True
        if b.error_rate and self.rng.random() < b.error_rate:
            s.errors += 1
            return 503, _error("The server is overloaded, try again.", "server_error"), "", True
        if embeddings:
            return self.embedding(request)
        if images:
            return self.image(request)
        return 200, self.completion(request), "", True

    def embedding(self, request: dict[str, Any]) -> tuple[int, Any, str, bool]:
        """The embeddings answer: one unit vector per text, from a hash of the model and the text.
        The payload carries the texts under ``_inputs`` for the counters; they are removed before
        it is sent."""
        texts = request.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return 400, _error("'input' must be a string or a non-empty list of strings", "invalid_request_error"), \
                "", True
        if any(not t for t in texts) or (self.behavior.fail_marker and any(self.behavior.fail_marker in t
                                                                              for t in texts)):
            return 400, _error("an input was rejected", "invalid_request_error"), "", True
        dim = request.get("dimensions") or self.behavior.embedding_dimensions
        model = str(request.get("model", "test-model"))
        data = [{"object": "embedding", "index": i, "embedding": embedding_vector(model, text, int(dim))}
                for i, text in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        self.stats.prompt_tokens += tokens
        return 200, {"object": "list", "data": data, "model": model, "_inputs": texts,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, "", True

    def image(self, request: dict[str, Any]) -> tuple[int, Any, str, bool]:
        """The images answer: ``n`` PNGs drawn from a hash of the model and the prompt (see
        :func:`image_png`), ``size`` pixels (8x8 without one, at most 1024 a side), base64 unless
        ``response_format`` is ``url``. A prompt containing ``fail_marker`` is refused with 400, as a
        content filter would. The payload carries the request's digest under ``_images`` (one per
        image) for the counters; it is removed before it is sent."""
        prompt, n = request.get("prompt"), request.get("n", 1)
        if not isinstance(prompt, str) or not prompt.strip():
            return 400, _error("'prompt' must be a non-empty string", "invalid_request_error"), "", True
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            return 400, _error("'n' must be an integer from 1 to 10", "invalid_request_error"), "", True
        size = _image_size(request.get("size"))
        if size is None:
            return 400, _error(f"invalid size {request.get('size')!r}", "invalid_request_error"), "", True
        if self.behavior.fail_marker and self.behavior.fail_marker in prompt:
            return 400, _error("Your request was rejected by the safety system.", "content_policy_violation"), \
                "", True
        model = str(request.get("model", "test-model"))
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
        data: list[dict[str, Any]] = []
        for i in range(n):
            png = image_png(model, prompt if i == 0 else f"{prompt}\0{i}", *size)
            data.append({"url": f"https://images.invalid/{digest}-{i}.png"} if request.get("response_format") == "url"
                        else {"b64_json": base64.b64encode(png).decode("ascii")})
        tokens = len(prompt.split())
        self.stats.prompt_tokens += tokens
        return 200, {"created": 0, "data": data, "_images": [digest] * n,
                     "usage": {"input_tokens": tokens, "output_tokens": n, "total_tokens": tokens + n}}, "", True

    def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        messages = request.get("messages") or []
        seed_text = json.dumps(messages, sort_keys=True)
        h = int(hashlib.sha256(seed_text.encode()).hexdigest()[:12], 16)
        tool_calls = self.tool_calls(request, messages, h)
        content = "" if tool_calls else self.content(request, messages, h)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if self.behavior.empty_rate and self.rng.random() < self.behavior.empty_rate:
            content = message["content"] = ""
        if self.behavior.fail_marker and self.behavior.fail_marker in seed_text:
            content = message["content"] = ""
        if self.behavior.reasoning == "tags":
            message["content"] = f"<think>Considering request {h % 1000}.</think>\n{content}"
        elif self.behavior.reasoning == "unclosed":
            message["content"] = f"<think>Considering request {h % 1000}. {content}"
        elif self.behavior.reasoning == "field":
            message["reasoning_content"] = f"Considering request {h % 1000}."
        if self.behavior.numeric_content_rate and self.rng.random() < self.behavior.numeric_content_rate:
            message["content"] = 42
        prompt_tokens = len(seed_text.split())
        completion_tokens = len(content.split())
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        if self.behavior.reasoning != "none":  # reasoning is part of the completion tokens, as OpenAI counts
            reasoning_tokens = len(f"Considering request {h % 1000}.".split())
            self.stats.completion_tokens += reasoning_tokens
            usage["completion_tokens"] += reasoning_tokens
            usage["total_tokens"] += reasoning_tokens
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        if self.behavior.text_usage:
            usage = {key: "many" for key in usage}
        return {"id": f"chatcmpl-{h:x}", "object": "chat.completion", "created": 0,
                "model": request.get("model", "test-model"),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage}

    def tool_calls(self, request: dict[str, Any], messages: list[dict[str, Any]], h: int) -> list[dict[str, Any]]:
        """With ``tool_rounds`` > 0, a request that offers ``tools`` is answered with tool calls until
        the conversation holds that many rounds of them (or ``tool_choice`` is "none"): round k calls
        the offered tools in turn, string arguments get the first user message, others a schema
        instance. The answer after them quotes the tool results (see ``content``)."""
        tools = [t["function"] for t in request.get("tools") or [] if isinstance(t, dict) and "function" in t]
        rounds = sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
        if not tools or rounds >= self.behavior.tool_rounds or request.get("tool_choice") == "none":
            return []
        prompt = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")[:200]
        calls = []
        for j in range(self.behavior.tool_calls_per_turn):
            tool = tools[(rounds * self.behavior.tool_calls_per_turn + j) % len(tools)]
            properties = (tool.get("parameters") or {}).get("properties") or {}
            arguments = {name: prompt if sub.get("type", "string") == "string" else schema_instance(sub, h)
                         for name, sub in properties.items()}
            calls.append({"id": f"call_{h % 10**8}_{rounds}_{j}", "type": "function",
                          "function": {"name": tool["name"], "arguments": json.dumps(arguments)}})
        return calls

    def content(self, request: dict[str, Any], messages: list[dict[str, Any]], h: int) -> str:
        text = "\n".join(_text(m.get("content")) for m in messages)
        last = _text(messages[-1].get("content")) if messages else ""
        schema, fenced = _requested_schema(request, text)
        if schema is not None:
            return self.json_content(schema, h, fenced)
        code = _CODE_RE.search(text)
        if code and self.behavior.prose_rate and self.rng.random() < self.behavior.prose_rate:
            return f"You could print the number {h % 1000}, for example."
        if code:
            return f"Here you go:\n```{code.group(1)}\n# snippet {h % 997}\nprint({h % 1000})\n```\nDone."
        results = [_text(m.get("content")) for m in messages if m.get("role") == "tool"]
        if results:
            return f"From the tools: {' | '.join(results)[:300]} [{_WORDS[h % len(_WORDS)]}-{h % 10000}]"
        return f"Echo: {last[:200]} [{_WORDS[h % len(_WORDS)]}-{h % 10000}]"

    def json_content(self, schema: dict[str, Any], h: int, fenced: bool) -> str:
        b = self.behavior
        value = schema_instance(schema, h)
        if b.invalid_rate and self.rng.random() < b.invalid_rate:
            value = {"unexpected": True} if not isinstance(value, dict) or value else {"unexpected": [1]}
        text = json.dumps(value)
        if b.malformed_rate and self.rng.random() < b.malformed_rate:
            text = text[: max(1, len(text) // 2)]
        return f"Sure, here it is:\n```json\n{text}\n```\nAnything else?" if fenced else text


def embedding_vector(model: str, text: str, dimensions: int) -> list[float]:
    """The test server's embedding of ``text``: a unit vector, the same for the same model and text."""
    rng = random.Random(hashlib.sha256(f"{model}\0{text}".encode()).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def image_png(model: str, prompt: str, width: int = 8, height: int = 8) -> bytes:
    """The test server's image for ``prompt``: an RGB PNG of ``width`` x ``height`` pixels, a
    checkerboard of two colours drawn from a hash of the model and the prompt (the same bytes for
    the same model and prompt), built with zlib and struct alone."""
    digest = hashlib.sha256(f"{model}\0{prompt}".encode()).digest()
    first, second = digest[0:3], digest[3:6]
    bands = [b"\0" + b"".join(first if (x // 4 + band) % 2 == 0 else second for x in range(width))
             for band in (0, 1)]
    raw = b"".join(bands[(y // 4) % 2] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw)) + \
        _png_chunk(b"IEND", b"")


def solid_png(rgb: tuple[int, int, int], size: int = 4) -> bytes:
    """A real ``size`` x ``size`` PNG of one colour (zlib + CRC chunks, as any decoder reads it):
    for tests that need image files."""
    raw = b"".join(b"\0" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw)) + \
        _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _image_size(value: Any) -> tuple[int, int] | None:
    """(width, height) of an images request's ``size``: 8x8 when absent or 'auto', None when invalid."""
    if value is None or value == "auto":
        return 8, 8
    match = re.fullmatch(r"([1-9][0-9]{0,3})x([1-9][0-9]{0,3})", value) if isinstance(value, str) else None
    if match is None or int(match[1]) > 1024 or int(match[2]) > 1024:
        return None
    return int(match[1]), int(match[2])


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _requested_schema(request: dict[str, Any], text: str) -> tuple[dict[str, Any] | None, bool]:
    """The schema a request asks for, and whether to answer in a fenced block with prose around it."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}, False
    if fmt.get("type") == "json_object":
        return fmt.get("schema") or {"type": "object"}, False
    found = _SCHEMA_RE.search(text)
    if found:
        try:
            return json.loads(found.group(1)), True
        except ValueError:
            return {"type": "object"}, True
    return None, False


def schema_instance(schema: dict[str, Any], h: int, defs: dict[str, Any] | None = None) -> Any:
    """A deterministic value satisfying the common JSON-schema keywords (for fake answers)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return schema_instance(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), h, defs)
    if "enum" in schema:
        return schema["enum"][h % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return schema_instance(schema[key][0], h, defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: schema_instance(sub, h + i + 1, defs) for i, (name, sub) in enumerate(props.items())}
    if kind == "array":
        count = max(schema.get("minItems", 2), 1)
        return [schema_instance(schema.get("items", {"type": "string"}), h + i, defs) for i in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        high = schema.get("maximum", low + 100)
        value = low + h % (int(high - low) + 1)
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return bool(h % 2)
    if kind == "null":
        return None
    return f"{_WORDS[h % len(_WORDS)]} {_WORDS[(h // 7) % len(_WORDS)]}"


class LLMTestServer:
    """The server in a background thread with its own event loop; a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, models: tuple[str, ...] = ("test-model",),
                 **behavior: Any) -> None:
        self.host = host
        self.port = port
        self.app = _App(ServerBehavior(**behavior), models)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Base URL to use as a provider endpoint, e.g. ``http://127.0.0.1:40123/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LLMTestServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                loop.create_server(lambda: _Handler(self.app), self.host, self.port, backlog=1024))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="gristmill-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> LLMTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def configure(self, **changes: Any) -> None:
        """Change the behaviour while serving, e.g. ``configure(max_concurrent=4)``."""
        self.app.configure(**changes)

    def stats(self) -> dict[str, Any]:
        """A copy of the counters."""
        return self.app.stats_dict()

    def reset_stats(self) -> None:
        self.app.stats = ServerStats()

    def request_log(self) -> list[tuple[float, str, int]]:
        """(monotonic time, body hash, status) of every completion request, in arrival order."""
        return list(self.app.stats.log)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gristmill.testing.server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", default=None, help="model id to list (repeatable)")
    for f in fields(ServerBehavior):
        kinds: dict[str, Callable[[str], Any]] = {"float": float, "int": int, "bool": _flag}
        kind = kinds.get(str(f.type).split(" |")[0], str)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = vars(parser.parse_args(argv))
    host, port, models = args.pop("host"), args.pop("port"), tuple(args.pop("model") or ("test-model",))
    server = LLMTestServer(host=host, port=port, models=models, **args).start()
    print(f"listening on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
