"""Which HTTP library should the LLM client use? Measured, not guessed.

Each candidate sends N chat-completion requests, ``concurrency`` at a time, to the
gristmill test server running in its own process with a fixed latency. Efficiency is
achieved requests/s divided by the ideal concurrency/latency; ``cpu_ms_per_request`` is
this process's CPU time per request (the client's cost). Prints JSON.

    PYTHONPATH=src python bench/bench_http.py [--n 1000] [--latency 0.05]

httpx is always measured; aiohttp only when installed (it is not a gristmill dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gristmill.llm.http import ConnectionPool

Sender = Callable[[bytes], Awaitable[int]]


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "gristmill.testing.server", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[-1]
    return proc, url


async def run(send: Sender, n: int, concurrency: int) -> tuple[float, float]:
    sem = asyncio.Semaphore(concurrency)
    bodies = [json.dumps({"model": "m", "messages": [{"role": "user", "content": f"row {i}"}]}).encode()
              for i in range(n)]

    async def one(body: bytes) -> None:
        async with sem:
            status = await send(body)
            assert status == 200, status

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    return time.perf_counter() - t0, time.process_time() - cpu0


async def with_raw(url: str, n: int, c: int) -> tuple[float, float]:
    pool = ConnectionPool(url)

    async def send(body: bytes) -> int:
        response = await pool.request("POST", "/chat/completions", body, timeout=30)
        json.loads(response.body)
        return response.status

    await run(send, c, c)  # warm the connections, as every client gets
    try:
        return await run(send, n, c)
    finally:
        await pool.aclose()


async def with_httpx(url: str, n: int, c: int) -> tuple[float, float]:
    import httpx

    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def send(body: bytes) -> int:
            response = await client.post("/chat/completions", content=body,
                                         headers={"Content-Type": "application/json"})
            response.json()
            return response.status_code

        await run(send, c, c)
        return await run(send, n, c)


async def with_aiohttp(url: str, n: int, c: int) -> tuple[float, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def send(body: bytes) -> int:
            async with session.post(url + "/chat/completions", data=body,
                                    headers={"Content-Type": "application/json"}) as response:
                await response.json()
                return response.status

        await run(send, c, c)
        return await run(send, n, c)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[4, 16, 64])
    args = parser.parse_args()
    clients: dict[str, Callable[[str, int, int], Coroutine[Any, Any, tuple[float, float]]]] = {
        "raw_asyncio (gristmill.llm.http)": with_raw, "httpx": with_httpx}
    try:
        import aiohttp  # noqa: F401

        clients["aiohttp"] = with_aiohttp
    except ImportError:
        pass
    proc, url = start_server(args.latency)
    results: dict[str, Any] = {"n": args.n, "latency_s": args.latency, "results": {}}
    try:
        for name, fn in clients.items():
            for c in args.concurrency:
                wall, cpu = asyncio.run(fn(url, args.n, c))
                results["results"].setdefault(name, {})[str(c)] = {
                    "efficiency": round(args.n / wall / (c / args.latency), 3),
                    "requests_per_s": round(args.n / wall, 1),
                    "cpu_ms_per_request": round(cpu / args.n * 1000, 3)}
    finally:
        proc.terminate()
        proc.wait()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
