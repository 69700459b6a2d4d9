"""Tools over MCP: one client session per tool provider, on the Mill's event loop.

A :class:`ToolRuntime` holds the tool providers and tool configs of one Mill (``tools.yaml`` in
the gristmill home, or ``Mill(tool_providers=..., tool_configs=...)``). A session is opened the
first time a column needs its provider's tools (a stdio server is started as a subprocess, a
streamable-HTTP server is connected to), its tool list is read once, and it stays open until
``aclose()`` (the Mill's ``close()``), so every batch, dataset and workflow stage of the Mill
shares it. ``aclose()`` leaves the runtime usable: a later run opens the sessions again.

The MCP SDK (``pip install 'gristmill[mcp]'``) is imported only when a session opens. Its
exceptions are converted here: an error the server answers for a call (a protocol error, or a
result with ``isError``) goes back to the model as the tool's result, so it can correct itself;
a call over its ``timeout`` or a broken session fails the cell (``ModelError``); a server that
cannot be started stops the run (``ModelUnreachableError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gristmill.config.tools import ToolConfig, ToolProvider
from gristmill.errors import ConfigError, ModelError, ModelUnreachableError
from gristmill.llm.secrets import env_var_name

logger = logging.getLogger("gristmill")

_INSTALL = "pip install 'gristmill[mcp]'"


@dataclass(frozen=True)
class ToolDefinition:
    """One tool as a server lists it."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments
    provider: str

    def openai(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry (what the request body offers the model)."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolResult:
    """What a call returned, as the text the model reads; ``is_error`` when the tool reported a failure."""

    text: str
    is_error: bool = False


def check_mcp_installed() -> None:
    """ConfigError naming the extra to install, when the MCP SDK is missing."""
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        raise ConfigError(f"tool use needs the MCP SDK: {_INSTALL}")


def _resolve(values: Mapping[str, str], what: str) -> dict[str, str]:
    """``values`` with every ``$NAME`` read from the environment (ConfigError when unset)."""
    out = {}
    for key, value in values.items():
        var = env_var_name(value)
        if var is not None:
            if var not in os.environ:
                raise ConfigError(f"{what} {key!r} reads the environment variable {var}, which is not set; "
                                  f"export {var}=...")
            value = os.environ[var]
        out[key] = value
    return out


class MCPSession:
    """One open session to one MCP server. The SDK's transports are context managers that must be
    entered and left in the same task, so the session lives in a task of its own (``_serve``)
    that waits until it is told to close; calls from any task of the same loop go through it."""

    def __init__(self, provider: ToolProvider) -> None:
        self.provider = provider
        self._session: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._tools: list[ToolDefinition] | None = None
        self._calls: asyncio.Semaphore | None = None
        self._starting: asyncio.Lock | None = None

    async def tools(self) -> list[ToolDefinition]:
        """The server's tools, listed once per session (the session opens on first use)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:  # concurrent first callers share one start
            if self._tools is None:
                await self._start()
                self._tools = await self._list_tools()
        return self._tools

    @property
    def listed(self) -> list[ToolDefinition]:
        """The tools listed so far (empty before the session opened)."""
        return list(self._tools or [])

    async def call(self, name: str, arguments: dict[str, Any], *, timeout: float) -> ToolResult:
        """Call ``name``; ModelError when it takes longer than ``timeout`` or the session broke."""
        await self.tools()
        where = f"tool {name!r} of tool provider {self.provider.name!r}"
        session, calls = self._session, self._calls
        if session is None or calls is None:
            raise ModelError(f"{where}: the MCP session has ended (did the server exit?); see the warning above")
        async with calls:
            try:
                result = await asyncio.wait_for(session.call_tool(name, arguments), timeout)
            except TimeoutError:
                raise ModelError(f"{where} did not answer within {timeout:g} s; raise the tool config's "
                                 "timeout or check the server") from None
            except Exception as exc:  # the SDK's errors, converted once here (see the module docstring)
                if _is_protocol_error(exc):
                    return ToolResult(f"error: {exc}", is_error=True)
                raise ModelError(f"{where} failed: {type(exc).__name__}: {exc}") from None
        return _result_text(result)

    async def aclose(self) -> None:
        """Close the session (a stdio server is stopped); it opens again on the next use."""
        task, closing = self._task, self._closing
        self._session = self._task = self._tools = None
        if task is None or closing is None:
            return
        closing.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 10)
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _start(self) -> None:
        check_mcp_installed()
        self._ready, self._closing, self._failure = asyncio.Event(), asyncio.Event(), None
        self._calls = asyncio.Semaphore(self.provider.max_parallel_calls)
        self._task = asyncio.ensure_future(self._serve())
        try:
            await asyncio.wait_for(self._ready.wait(), self.provider.startup_timeout)
        except TimeoutError:
            await self.aclose()
            raise ModelUnreachableError(f"tool provider {self.provider.name!r} did not start within "
                                        f"{self.provider.startup_timeout:g} s ({self._describe()})") from None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            await self.aclose()
            raise ModelUnreachableError(f"tool provider {self.provider.name!r} could not be started "
                                        f"({self._describe()}): {type(failure).__name__}: {failure}. "
                                        "Fix its command or url in tools.yaml") from None

    async def _serve(self) -> None:
        assert self._ready is not None and self._closing is not None
        from mcp import ClientSession

        try:
            async with self._transport() as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                self._session = session
                self._ready.set()
                await self._closing.wait()
        except Exception as exc:  # reported to the caller of _start, or logged once the session ran
            if not self._ready.is_set():
                self._failure = exc
            else:
                logger.warning("gristmill: MCP session of tool provider %r ended: %s: %s",
                               self.provider.name, type(exc).__name__, exc)
        finally:
            self._session = None
            self._ready.set()

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        provider = self.provider
        if provider.command:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=provider.command, args=list(provider.args),
                                           env=_resolve(provider.env, f"tool provider {provider.name!r} env")
                                           or None, cwd=provider.cwd)
            async with stdio_client(params) as streams:
                yield streams[0], streams[1]
            return
        assert provider.url is not None
        headers = _resolve(provider.headers, f"tool provider {provider.name!r} header")
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        async with create_mcp_http_client(headers=headers) as client, \
                streamable_http_client(provider.url, http_client=client) as streams:
            yield streams[0], streams[1]

    async def _list_tools(self) -> list[ToolDefinition]:
        tools: list[ToolDefinition] = []
        cursor: str | None = None
        while True:
            try:
                listed = await asyncio.wait_for(self._list_page(cursor), self.provider.startup_timeout)
            except Exception as exc:  # the SDK's errors, converted once here
                await self.aclose()
                raise ModelUnreachableError(f"tool provider {self.provider.name!r} could not list its tools: "
                                            f"{type(exc).__name__}: {exc}") from None
            data = listed.model_dump(mode="json", by_alias=True)
            for tool in data.get("tools") or []:
                tools.append(ToolDefinition(name=tool["name"], description=tool.get("description") or "",
                                            parameters=tool.get("inputSchema") or {"type": "object"},
                                            provider=self.provider.name))
            cursor = data.get("nextCursor")
            if not cursor:
                return tools

    async def _list_page(self, cursor: str | None) -> Any:
        if cursor is None:
            return await self._session.list_tools()
        from mcp import types

        return await self._session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))

    def _describe(self) -> str:
        provider = self.provider
        if provider.command:
            return f"command {' '.join([provider.command, *provider.args])!r}"
        return f"url {provider.url}"


def _is_protocol_error(exc: Exception) -> bool:
    """An error the MCP server answered for the call (the SDK's ``MCPError``)."""
    from mcp import MCPError

    return isinstance(exc, MCPError)


def _result_text(result: Any) -> ToolResult:
    """A CallToolResult as text: its text parts joined, other parts named, else its structured content."""
    data = result.model_dump(mode="json", by_alias=True)
    parts = []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            parts.append(f"[{block.get('type')} content: {block.get('mimeType') or block.get('uri') or 'omitted'}]")
    text = "\n".join(parts)
    if not text and data.get("structuredContent") is not None:
        text = json.dumps(data["structuredContent"], sort_keys=True, ensure_ascii=False)
    return ToolResult(text, is_error=bool(data.get("isError")))


@dataclass(frozen=True)
class ToolSet:
    """The tools one tool config offers, each bound to the session that serves it."""

    config: ToolConfig
    definitions: tuple[ToolDefinition, ...]
    sessions: Mapping[str, MCPSession]  # tool name -> session

    def offer(self) -> list[dict[str, Any]]:
        """The request body's ``tools``: every allowed tool, in a stable order."""
        return [tool.openai() for tool in self.definitions]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call an offered tool; a name outside the offer is an error result the model reads."""
        session = self.sessions.get(name)
        if session is None:
            offered = ", ".join(sorted(self.sessions)) or "none"
            return ToolResult(f"error: there is no tool named {name!r}; the tools are: {offered}", is_error=True)
        return await session.call(name, arguments, timeout=self.config.timeout)


class ToolRuntime:
    """Tool providers and tool configs of one Mill, and their sessions (opened on first use)."""

    def __init__(self, providers: Iterable[ToolProvider] = (), configs: Iterable[ToolConfig] = ()) -> None:
        self.providers = {p.name: p for p in providers}
        self.configs = {c.alias: c for c in configs}
        self._sessions: dict[str, MCPSession] = {}

    @classmethod
    def load(cls, *, providers: Sequence[ToolProvider] | str | Path | None = None,
             configs: Sequence[ToolConfig] | str | Path | None = None,
             home: str | Path | None = None) -> ToolRuntime:
        """From lists or YAML files; each that is None comes from ``tools.yaml`` in the gristmill home.

        >>> ToolRuntime.load(providers=[ToolProvider(name="docs", command="docs-server")],
        ...                  configs=[ToolConfig(alias="docs", providers=["docs"])]).aliases()
        ['docs']
        """
        from gristmill.llm.registry import gristmill_home, load_items

        default = gristmill_home(home) / "tools.yaml"
        return cls(load_items(providers, ToolProvider, "tool_providers", default),
                   load_items(configs, ToolConfig, "tool_configs", default))

    def aliases(self) -> list[str]:
        return sorted(self.configs)

    def config(self, alias: str) -> ToolConfig:
        """The tool config ``alias`` names, its providers checked (ConfigError naming what is known)."""
        config = self.configs.get(alias)
        if config is None:
            known = ", ".join(self.aliases()) or "none"
            raise ConfigError(f"unknown tool alias {alias!r}; known tool aliases: {known}. Add it to tool_configs "
                              "in tools.yaml or pass it as Mill(tool_configs=[...])")
        missing = [name for name in config.providers if name not in self.providers]
        if missing:
            known = ", ".join(sorted(self.providers)) or "none"
            raise ConfigError(f"tool alias {alias!r} uses tool provider(s) {', '.join(map(repr, missing))}, which "
                              f"are not configured; known tool providers: {known}")
        return config

    def check_alias(self, alias: str) -> None:
        """Static checks before any work: the alias and its providers exist, the SDK is installed."""
        self.config(alias)
        check_mcp_installed()

    async def toolset(self, alias: str) -> ToolSet:
        """The tools ``alias`` offers: its providers' sessions opened and listed, ``allow_tools``
        applied. ConfigError when an allowed tool is listed by no provider, or by two."""
        config = self.config(alias)
        definitions: list[ToolDefinition] = []
        sessions: dict[str, MCPSession] = {}
        for name in config.providers:
            session = self._sessions.get(name)
            if session is None:
                session = self._sessions[name] = MCPSession(self.providers[name])
            for tool in await session.tools():
                if config.allow_tools and tool.name not in config.allow_tools:
                    continue
                if tool.name in sessions:
                    raise ConfigError(f"tool alias {alias!r}: tool {tool.name!r} is listed by tool providers "
                                      f"{sessions[tool.name].provider.name!r} and {name!r}; allow only one of them")
                sessions[tool.name] = session
                definitions.append(tool)
        unknown = [name for name in config.allow_tools if name not in sessions]
        if config.first_call is not None and config.first_call not in sessions and config.first_call not in unknown:
            unknown.append(config.first_call)
        if unknown:
            listed = ", ".join(sorted({t.name for p in config.providers for t in self._sessions[p].listed})) or "none"
            raise ConfigError(f"tool alias {alias!r} names {', '.join(map(repr, unknown))} (allow_tools, "
                              f"first_call), which its providers do not list; they list: {listed}")
        return ToolSet(config=config, definitions=tuple(definitions), sessions=sessions)

    async def aclose(self) -> None:
        """Close every session (stdio servers are stopped); the runtime stays usable."""
        for session in self._sessions.values():
            await session.aclose()

