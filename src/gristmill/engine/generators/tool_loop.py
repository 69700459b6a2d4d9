"""The tool-call conversation of an LLM column with ``tool_alias``.

The model is offered the tool config's tools (``tools`` in every request body). While an answer
asks for tools (``tool_calls``), gristmill calls them over MCP, appends the assistant's request
and one ``tool`` message per result, and asks again. After ``max_tool_call_turns`` answers that
asked for tools, the next request carries ``tool_choice: "none"``; a model that still asks then
fails the cell.

Every turn is cached on its own in the response cache, keyed by that turn's full request body
(which holds every earlier call and result), the column and the row. A crash in the middle of a
conversation therefore re-pays at most the request in flight: the rerun serves the earlier turns
from the cache, calls the tools again, and when a tool answers as before, the next turn's body,
and so its key, is the same. A tool that answers differently makes the turns after it new
requests, as it should: their input changed. Tools are always called again; their results are
not cached (a lookup may have changed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, MutableMapping
from typing import Any

from gristmill.errors import ModelResponseError
from gristmill.llm.cache import ResponseCache
from gristmill.llm.mcp import ToolRuntime, ToolSet
from gristmill.llm.runtime import ModelHandle
from gristmill.llm.types import Completion, Conversation, Message, RequestBody, ToolCall

# Added to the column in a turn's cache key, so a turn never shares a key with the cell's final
# value (the first turn's body is also the cell's key).
TURN_KEY_SUFFIX = "#tool-turn"


def tool_rounds(messages: list[dict[str, Any]]) -> int:
    """How many answers of a conversation asked for tools."""
    return sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))


class ToolConversation:
    """Runs the tool-call loop for the cells of one LLM column (``engine/generators/llm.py`` builds
    one per column with ``tool_alias``; its bodies go through :meth:`with_tools`)."""

    def __init__(self, *, handle: ModelHandle, tools: ToolRuntime, tool_alias: str, cache: ResponseCache | None,
                 cache_column: str, usage: MutableMapping[str, int]) -> None:
        self.handle = handle
        self.runtime = tools
        self.alias = tool_alias
        self.config = tools.config(tool_alias)  # ConfigError now for an unknown alias
        self.cache = cache
        self.cache_column = cache_column
        self.usage = usage
        self.toolset: ToolSet | None = None

    async def prepare(self) -> None:
        """Open the providers' sessions and list their tools (once per column generator)."""
        if self.toolset is None:
            self.toolset = await self.runtime.toolset(self.alias)

    def with_tools(self, body: RequestBody) -> RequestBody:
        """``body`` with the tools offered, and ``tool_choice: "none"`` once its conversation has used
        its ``max_tool_call_turns``. Deterministic in the body: the result is a cache key."""
        if self.toolset is None:
            raise RuntimeError("ToolConversation.prepare() must run before bodies are built")
        body = {**body, "tools": self.toolset.offer()}
        rounds = tool_rounds(body["messages"])
        if rounds >= self.config.max_tool_call_turns:
            body["tool_choice"] = "none"
        elif rounds == 0 and self.config.first_call is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": self.config.first_call}}
        return body

    async def complete(self, conversation: Conversation, body: RequestBody, row: int,
                       build: Callable[[list[Message]], RequestBody]) -> Completion:
        """Ask, call tools, ask again, until an answer asks for none, and return that answer. Each
        answer that asks for tools and each tool result is added to ``conversation`` (so the trace
        shows them and a correction continues after them); ``build`` makes the next body from the
        messages (through :meth:`with_tools`)."""
        while True:
            completion = await self._turn(body, row)
            if not completion.tool_calls:
                return completion
            conversation.answered(completion)
            if body.get("tool_choice") == "none":
                raise ModelResponseError(
                    f"model {self.handle.alias!r} still asked for tools after {self.config.max_tool_call_turns} "
                    f"turns of tool calls (tool alias {self.alias!r}); raise max_tool_call_turns or make the "
                    "prompt ask for fewer lookups")
            conversation.add(_assistant_message(completion), reasoning=completion.reasoning)
            results = await asyncio.gather(*(self._call(call) for call in completion.tool_calls))
            for call, text in zip(completion.tool_calls, results, strict=True):
                conversation.add({"role": "tool", "tool_call_id": call.id, "content": text})
            body = build(list(conversation.messages))

    async def _turn(self, body: RequestBody, row: int) -> Completion:
        """One request of the conversation, from the cache when this exact turn was answered before."""
        key = None
        if self.cache is not None:
            key = ResponseCache.key(identity=self.handle.identity, body=body,
                                    column=self.cache_column + TURN_KEY_SUFFIX, row=row)
            stored = self.cache.get(key)
            if stored is not None:
                self.usage["tool_turn_cache_hits"] += 1
                return _completion_of(stored)
        completion = await self.handle.complete(body, self.usage)
        # No await between the answer and storing it: see ModelHandle._attempt.
        if key is not None and self.cache is not None:
            self.cache.put(key, _stored(completion), column=self.cache_column)
        return completion

    async def _call(self, call: ToolCall) -> str:
        """The text of the tool message answering ``call``; arguments the model garbled, and
        errors the tool reports, go back to the model as text so it can correct itself."""
        assert self.toolset is not None
        try:
            # strict=False: a raw newline inside a string (small models write them) is taken as it is.
            arguments = json.loads(call.arguments, strict=False) if call.arguments.strip() else {}
        except ValueError as exc:
            return f"error: the arguments of {call.name!r} are not valid JSON ({exc}); call it again with a JSON object"
        if not isinstance(arguments, dict):
            return f"error: the arguments of {call.name!r} must be a JSON object"
        self.usage["tool_calls"] += 1
        result = await self.toolset.call(call.name, arguments)
        if result.is_error and not result.text.startswith("error"):
            return "error: " + result.text
        return result.text


def _assistant_message(completion: Completion) -> dict[str, Any]:
    """The assistant's turn as the next request quotes it back (OpenAI form)."""
    # "" not None: chat templates of llama.cpp models (SmolLM2 among them) cannot render a null content.
    return {"role": "assistant", "content": completion.content or "",
            "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                           for c in completion.tool_calls]}


def _stored(completion: Completion) -> dict[str, Any]:
    return {"content": completion.content, "reasoning": completion.reasoning,
            "tool_calls": [[c.id, c.name, c.arguments] for c in completion.tool_calls]}


def _completion_of(stored: dict[str, Any]) -> Completion:
    # Token counts are not restored: a cached turn cost nothing this run.
    return Completion(content=stored.get("content") or "", reasoning=stored.get("reasoning"),
                      tool_calls=tuple(ToolCall(id=i, name=n, arguments=a) for i, n, a in stored.get("tool_calls", [])))
