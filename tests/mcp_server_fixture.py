"""A small MCP server for the tool-use tests, with two tools: ``lookup`` and ``add``.

Run over stdio (``python tests/mcp_server_fixture.py``) or streamable HTTP (``--http PORT``).
Environment (set through ``ToolProvider.env``):

- ``MCP_FIXTURE_LOG``: a file that gets one line per tool call (``name<TAB>arguments``), so a
  test can count the calls that really reached this process.
- ``MCP_FIXTURE_BLOCK``: a file; a ``lookup`` whose query contains "block" writes this process's
  pid there and then waits (at most 60 s), so a test can kill the run mid-conversation.

A ``lookup`` whose query contains "explode" raises: the client gets an error result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

from mcp.server.mcpserver import MCPServer as Server
from mcp.server.mcpserver.exceptions import ToolError

WORDS = "amber basil cedar delta ember fjord grove harbor island juniper".split()
server = Server("gristmill-test-tools")


def _log(name: str, arguments: dict[str, object]) -> None:
    path = os.environ.get("MCP_FIXTURE_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{name}\t{json.dumps(arguments, sort_keys=True)}\n")


@server.tool()
async def lookup(query: str) -> str:
    """Look up a fact about the query."""
    _log("lookup", {"query": query})
    block = os.environ.get("MCP_FIXTURE_BLOCK")
    if block and "block" in query:
        with open(block + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(block + ".tmp", block)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # killed by the test long before
            time.sleep(0.05)
    if "explode" in query:
        raise ToolError("the archive is closed")
    word = WORDS[int(hashlib.sha256(query.encode()).hexdigest(), 16) % len(WORDS)]
    return f"fact[{word}] about {query.splitlines()[0][:60]}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _log("add", {"a": a, "b": b})
    return a + b


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP on this port")
    args = parser.parse_args()
    if args.http is None:
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
