"""A small HTTP/1.1 client on asyncio protocols: keep-alive connection pool, JSON POST/GET.

Chosen by measurement over httpx and aiohttp (``bench/bench_http.py``: 1000 requests to
the test server in its own process, 50 ms latency): at 64 concurrent requests this client
reaches 0.91-0.93 of the concurrency/latency limit at 0.04-0.09 ms of CPU per request,
aiohttp 0.87 at 0.14-0.16 ms, and httpx's pool stalls at 0.09 (8.7-8.9 ms). See
``docs/llm.md`` for the whole table. The client speaks only what LLM endpoints need: requests with a
``Content-Length`` body; responses with ``Content-Length``, chunked, or close-delimited
bodies, optionally gzip/deflate-encoded; ``http`` and ``https``. No proxies, no HTTP/2.

Transport failures raise :class:`HTTPTransportError` subclasses; the model client maps
them to retries and :mod:`gristmill.errors` once.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit


class HTTPTransportError(Exception):
    """The request did not get a complete HTTP response."""


# How a connect failure's message starts: clients report transport failures as messages (an
# ``Attempt``), and the runtime tells "nothing listens there" from other transient failures by it.
CONNECT_FAILED = "cannot connect to"


class HTTPConnectError(HTTPTransportError):
    """No connection could be opened."""


class HTTPTimeout(HTTPTransportError):
    """No complete response within the timeout."""


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[HTTPResponse] | None = None
        self.received_any = False
        self._reset()

    def _reset(self) -> None:
        self.buf = bytearray()
        self.status = 0
        self.headers: dict[str, str] | None = None
        self.length: int | None = None
        self.chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.headers is not None and self.length is None and not self.chunked:
                self._finish(bytes(self.buf))  # close-delimited body
            else:
                waiter.set_exception(HTTPTransportError(f"connection closed before a full response ({exc})"))

    def send(self, data: bytes, waiter: asyncio.Future[HTTPResponse]) -> None:
        self._reset()
        self.received_any = False
        self.waiter = waiter
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self.buf += data
        if self.headers is None and not self._parse_head():
            return
        if self.chunked:
            self._parse_chunks()
        elif self.length is not None and len(self.buf) >= self.length:
            self._finish(bytes(self.buf[: self.length]))

    def _parse_head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        self.status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
        elif "content-length" in headers:
            self.length = int(headers["content-length"])
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self.length = 0
        return True

    def _parse_chunks(self) -> None:
        body = bytearray()
        pos = 0
        buf = self.buf
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            if size == 0:
                if buf.find(b"\r\n", line_end + 2) < 0:
                    return  # trailers not complete yet
                self._finish(bytes(body))
                return
            start = line_end + 2
            if len(buf) < start + size + 2:
                return
            body += buf[start:start + size]
            pos = start + size + 2

    def _finish(self, body: bytes) -> None:
        assert self.headers is not None
        encoding = self.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            body = zlib.decompress(body, 47 if encoding == "gzip" else zlib.MAX_WBITS)
        if self.headers.get("connection", "").lower() == "close" and self.transport is not None:
            self.transport.close()
            self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(HTTPResponse(self.status, self.headers, body))


class ConnectionPool:
    """Keep-alive connections to one origin, created on demand, reused most-recent first.

    The pool size is bounded by the caller's concurrency (the throttle), not here. A pool is
    bound to the event loop it first ran on; ``aclose()`` at the end of a run releases it,
    and the next run opens new connections on its own loop.
    """

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint {base_url!r} must be an http:// or https:// URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = self.host if parts.port is None else f"{self.host}:{parts.port}"
        fixed = {"Host": host_header, "User-Agent": "gristmill", "Accept": "application/json",
                 "Accept-Encoding": "gzip, deflate", **(headers or {})}
        self._fixed_headers = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def request(self, method: str, path: str, body: bytes = b"", *, timeout: float,
                      headers: str = "") -> HTTPResponse:
        """Send one request; ``headers`` is pre-formatted ``"Name: value\\r\\n"`` lines."""
        head = (f"{method} {self.base_path}{path} HTTP/1.1\r\n{self._fixed_headers}{headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        data = head.encode("latin-1") + body
        try:
            async with asyncio.timeout(timeout):
                return await self._send(data)
        except TimeoutError:
            raise HTTPTimeout(f"no response within {timeout:g} s") from None

    async def _send(self, data: bytes) -> HTTPResponse:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._idle = []  # connections of a previous loop cannot be used here
            self._loop = loop
        for attempt in (0, 1):
            conn, reused = await self._acquire(loop)
            waiter: asyncio.Future[HTTPResponse] = loop.create_future()
            conn.send(data, waiter)
            try:
                response = await waiter
            except HTTPTransportError:
                # A keep-alive connection the server closed while idle fails before any byte
                # arrives; the request never reached the application, so one retry is safe.
                if reused and not conn.received_any and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.waiter = None
                if conn.transport is not None:
                    conn.transport.abort()
                raise
            if not conn.closed:
                self._idle.append(conn)
            return response
        raise AssertionError("unreachable")

    async def _acquire(self, loop: asyncio.AbstractEventLoop) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
        try:
            _, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl,
                                                   server_hostname=self.host if self.ssl else None)
        except (OSError, ssl.SSLError) as exc:
            raise HTTPConnectError(f"{CONNECT_FAILED} {self.host}:{self.port}: {exc}") from exc
        return conn, False

    async def aclose(self) -> None:
        """Close idle connections (in-flight ones close when their request ends)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()
        if idle:
            await asyncio.sleep(0)  # let the transports run their close callbacks
