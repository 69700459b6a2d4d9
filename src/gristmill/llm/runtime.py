"""The LLM runtime one ``Mill`` owns: clients per provider, throttles per (provider, model).

Generators get a :class:`ModelHandle` per column and call :meth:`ModelHandle.complete`, which
waits for a throttle slot, sends, and retries: 429s shrink the throttle and pause it for
``Retry-After`` (no new request of that model starts meanwhile; the rejected one waits it out
without holding a slot); 5xx, timeouts and connection errors back off
exponentially with jitter; 401/403 raise ``ModelAuthError`` at once; other 4xx fail the cell.

Clients are built per provider (``OpenAIClient`` or ``LocalClient``) unless the runtime was given
one for that provider's name (``clients=``): any :class:`~gristmill.llm.types.ChatClient`, such
as ``gristmill.testing.FunctionModel``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.errors import ConfigError, ModelAuthError, ModelError, ModelRateLimitError, ModelUnreachableError
from gristmill.llm.http import CONNECT_FAILED
from gristmill.llm.local import LocalClient, check_local_available
from gristmill.llm.mcp import ToolRuntime
from gristmill.llm.openai import OpenAIClient
from gristmill.llm.registry import LOCAL_PROVIDER, ModelRegistry, ResolvedModel
from gristmill.llm.secrets import env_var_name, looks_like_a_mistyped_variable
from gristmill.llm.throttle import AdaptiveThrottle
from gristmill.llm.types import Attempt, ChatClient, Completion, Message, Outcome, RequestBody

Usage = MutableMapping[str, int]
MAX_BACKOFF = 30.0
# Retries of a refused connection before the endpoint ever answered: a server still starting
# gets about a second; a wrong or dead endpoint fails in seconds, not after max_retries backoffs.
FIRST_CONNECT_RETRIES = 2


class ModelHandle:
    """One resolved model bound to its provider's client and its (provider, model) throttle."""

    def __init__(self, resolved: ResolvedModel, client: ChatClient, throttle: AdaptiveThrottle) -> None:
        self.resolved = resolved
        self.client = client
        self.throttle = throttle
        config = resolved.model
        # Parameters drawn per row are the LLM column's to add (engine/generators/llm.py).
        self._params = config.inference_parameters.fixed_params()

    @property
    def alias(self) -> str:
        return self.resolved.alias

    def without_retries(self) -> ModelHandle:
        """The same model sending each request once (``gristmill models check``)."""
        model = self.resolved.model.model_copy(update={"max_retries": 0, "max_rate_limit_wait": 0})
        return ModelHandle(ResolvedModel(model=model, provider=self.resolved.provider), self.client, self.throttle)

    @property
    def identity(self) -> str:
        return self.resolved.identity

    def build_body(self, messages: list[Message], json_schema: dict[str, Any] | None = None) -> RequestBody:
        """The full request body, also the input of the response-cache key."""
        return self.client.build_body(self.resolved.model.model, messages, params=self._params,
                                      json_schema=json_schema)

    async def complete(self, body: RequestBody, usage: Usage) -> Completion:
        """Send with retries; raises ModelError (or a subclass) when the request cannot succeed."""
        config = self.resolved.model
        transient_failures = rate_limited = 0
        rate_limit_deadline = time.monotonic() + config.max_rate_limit_wait
        retry = False
        while True:
            attempt, pause = await self._attempt(body, usage, first=retry, rate_limited=rate_limited)
            retry = True
            if attempt.outcome is Outcome.OK:
                assert attempt.completion is not None
                usage["input_tokens"] += attempt.completion.input_tokens
                usage["output_tokens"] += attempt.completion.output_tokens
                if attempt.completion.reasoning_tokens:  # reported by some endpoints, part of output_tokens
                    usage["reasoning_tokens"] += attempt.completion.reasoning_tokens
                return attempt.completion
            where = f"model {self.alias!r} ({self.resolved.provider.name}/{config.model})"
            if attempt.outcome is Outcome.AUTH:
                raise ModelAuthError(f"{where} refused the credentials: {attempt.message.rstrip('.')}. "
                                     f"{_auth_hint(self.resolved.provider)}")
            if attempt.outcome is Outcome.REJECTED:
                raise ModelError(f"{where} rejected the request: {attempt.message}")
            if attempt.outcome is Outcome.RATE_LIMITED:
                usage["rate_limited"] += 1
                rate_limited += 1
                # Retry-After is honoured in full (never shortened): the throttle is paused for
                # it, and this request waits it out with jitter on top so the requests it sent
                # away do not all come back at the same instant.
                delay = pause * random.uniform(1.0, 1.2)
                if time.monotonic() + delay > rate_limit_deadline:
                    raise ModelRateLimitError(f"{where} kept answering 429 for {config.max_rate_limit_wait:g} s: "
                                              f"{attempt.message}. Lower max_parallel_requests or retry later.")
            else:
                transient_failures += 1
                if self._unreachable(attempt, transient_failures):
                    raise ModelUnreachableError(self._unreachable_message(attempt))
                if transient_failures > config.max_retries:
                    raise ModelError(f"{where} failed after {config.max_retries} retries: {attempt.message}")
                delay = _backoff(config.retry_backoff, transient_failures)
            usage["retries"] += 1
            await asyncio.sleep(delay)

    def _unreachable(self, attempt: Attempt, failures: int) -> bool:
        """Connection refused again and again, and the endpoint has never answered this Mill."""
        refused = attempt.status is None and attempt.message.startswith(CONNECT_FAILED)
        retries = min(FIRST_CONNECT_RETRIES, self.resolved.model.max_retries)
        return refused and not self.throttle.reached and failures > retries

    def _unreachable_message(self, attempt: Attempt) -> str:
        provider = self.resolved.provider
        return (f"model alias {self.alias!r} cannot reach its endpoint {provider.endpoint} (provider "
                f"{provider.name!r}), which has not answered once: {attempt.message}. Start the server or fix the "
                f"endpoint in providers.yaml, then check it with `gristmill models check {self.alias}`")

    async def _attempt(self, body: RequestBody, usage: Usage, *, first: bool,
                       rate_limited: int) -> tuple[Attempt, float]:
        """Send once; returns the attempt and, for a 429, the pause it imposed (Retry-After, else
        the backoff after ``rate_limited`` earlier 429s of this request)."""
        throttle = self.throttle
        epoch = await throttle.acquire(first=first)
        pause = 0.0
        try:
            usage["requests"] += 1
            attempt = await self.client.send(body, timeout=self.resolved.model.timeout)
            if attempt.outcome is Outcome.OK or attempt.status is not None:
                throttle.reached = True
            # Adapt the limit (and pause on a 429) before the slot is handed on, so the next
            # request sees it.
            if attempt.outcome is Outcome.OK:
                throttle.on_success(epoch)
            elif attempt.outcome is Outcome.RATE_LIMITED:
                # "Retry-After: 0" (or a date already past) would retry at once, forever: the
                # backoff is the floor.
                backoff = _backoff(self.resolved.model.retry_backoff, rate_limited + 1)
                pause = max(attempt.retry_after or 0.0, backoff)
                throttle.on_rate_limited(epoch, pause=pause)
        finally:
            throttle.release()
        # No await between here and the caller storing the answer in the response cache: the
        # request that takes over the freed slot runs only after that, so at any moment at most
        # max_parallel_requests answers are unstored (what a crash can cost).
        return attempt, pause


def _auth_hint(provider: ModelProvider) -> str:
    """What to check after a 401/403 (never the key itself)."""
    hint = f"Check the api_key of provider {provider.name!r}."
    if looks_like_a_mistyped_variable(provider.api_key):
        # '$OPENAI-KEY' is not a variable name, so it was sent as the key itself.
        hint += (" It starts with '$' but is not a $VARIABLE name (letters, digits, '_'), so it was "
                 "sent as a literal key; write 'literal:...' to mean that, or fix the variable name.")
    return hint


def _backoff(base: float, failures: int) -> float:
    """Exponential backoff with jitter: between half and all of base * 2**(failures-1), capped."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF, base * 2.0 ** (failures - 1))


class ProviderEndpoint:
    """An endpoint of an OpenAI-compatible provider other than chat (``/embeddings``,
    ``/images/generations``), in the shape the runtime's retry loop drives (a
    :class:`~gristmill.llm.types.ChatClient`). It shares the provider's chat client's connection
    pool, which the runtime closes; ``aclose`` does nothing. Subclasses name their ``kind`` of
    model and ``send``."""

    kind: str = ""  # "embedding", "image": what the error says when an LLM column names this model

    def __init__(self, client: OpenAIClient) -> None:
        self.client = client
        self.provider: ModelProvider = client.provider

    def build_body(self, model: str, messages: list[Message], *, params: dict[str, Any],
                   json_schema: dict[str, Any] | None) -> RequestBody:
        raise ConfigError(f"model {model!r} of provider {self.provider.name!r} is an {self.kind} model; "
                          "LLM columns need a model with generation_type: chat")

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def endpoint_handle(handle: ModelHandle, endpoint: type[ProviderEndpoint], *, needs: str, advice: str) -> ModelHandle:
    """``handle``'s model, throttle and retries, sending through ``endpoint``. ConfigError when the
    provider's client is not the OpenAI-compatible one (the embedded local model, or a client passed
    to ``Mill(clients=...)``): ``needs`` says what needs it, ``advice`` follows the reason."""
    client = handle.client
    if not isinstance(client, OpenAIClient):
        raise ConfigError(f"model alias {handle.alias!r}: {needs} an OpenAI-compatible provider (provider_type: "
                          f"openai), but provider {handle.resolved.provider.name!r} is served by a "
                          f"{type(client).__name__}{advice}")
    return ModelHandle(handle.resolved, endpoint(client), handle.throttle)


class LLMRuntime:
    """Clients and throttles shared by every column, dataset and workflow stage of one Mill.

    Call ``await runtime.aclose()`` at the end of each event loop's run (``asyncio.run``):
    connections belong to a loop. Throttle state (the learned limits) survives it.
    """

    def __init__(self, registry: ModelRegistry, *, clients: Mapping[str, ChatClient] | None = None,
                 tools: ToolRuntime | None = None) -> None:
        self.registry = registry
        self.tools = tools if tools is not None else ToolRuntime()  # MCP sessions, opened on first use
        # Clients given by the caller, by provider name: used as they are, never built or checked.
        self._given: dict[str, ChatClient] = _check_clients(registry, clients or {})
        if LOCAL_PROVIDER.name in self._given:
            registry.warn_local = False
        self._clients: dict[str, ChatClient] = dict(self._given)
        self._throttles: dict[tuple[str, str], AdaptiveThrottle] = {}

    def model(self, alias: str, extra_models: Iterable[ModelConfig] = ()) -> ModelHandle:
        """The handle for ``alias`` (ConfigError when unknown)."""
        resolved = self.registry.resolve(alias, extra_models)
        provider = resolved.provider
        client = self._clients.get(provider.name)
        if client is None:
            client = LocalClient(provider) if provider.provider_type == "local" else OpenAIClient(provider)
            self._clients[provider.name] = client
        # One throttle per (provider, model): aliases of the same model with different
        # max_parallel_requests share it, capped at the smallest of them.
        throttle = self._throttles.get(resolved.throttle_key)
        if throttle is None:
            throttle = AdaptiveThrottle(resolved.model.max_parallel_requests)
            self._throttles[resolved.throttle_key] = throttle
        else:
            throttle.lower_ceiling(resolved.model.max_parallel_requests)
        return ModelHandle(resolved, client, throttle)

    def check_aliases(self, aliases: set[str], extra_models: Iterable[ModelConfig] = ()) -> None:
        """Static checks before any request: every alias resolves, its API key variable is set,
        the local model can run. ConfigError / ModelAuthError name what to fix. A provider with a
        client of the caller's needs neither endpoint nor key: that client is its own business."""
        extra = list(extra_models)
        for alias in sorted(aliases):
            resolved = self.registry.resolve(alias, extra)
            if resolved.provider.name not in self._given:
                _check_provider(resolved.provider, alias)

    async def aclose(self) -> None:
        """Close connections; the runtime stays usable (new connections open on demand)."""
        for client in self._clients.values():
            await client.aclose()
        await self.tools.aclose()


def _check_provider(provider: ModelProvider, alias: str) -> None:
    """The built-in client for ``provider`` can work: local model installed, or an http(s)
    endpoint and its API key variable set."""
    if provider.provider_type == "local":
        check_local_available()
        return
    if not provider.endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"provider {provider.name!r} (model alias {alias!r}) needs an http(s):// "
                          f"endpoint, got {provider.endpoint!r}")
    var = env_var_name(provider.api_key) if provider.api_key else None
    if var is not None and not os.environ.get(var):
        raise ModelAuthError(f"model alias {alias!r}: provider {provider.name!r} reads its API key from "
                             f"the environment variable {var}, which is not set; export {var}=...")


def _check_clients(registry: ModelRegistry, clients: Mapping[str, ChatClient]) -> dict[str, ChatClient]:
    """``clients`` as a dict, after checking that each key names a provider and each value is a
    ChatClient (ConfigError naming the known providers / the missing methods)."""
    known = ", ".join(sorted(registry.providers))
    for name, client in clients.items():
        if name not in registry.providers:
            raise ConfigError(f"clients: no provider named {name!r}; known providers: {known}. Key the client "
                              f"by one of them, or add ModelProvider(name={name!r}) to the model providers.")
        if not isinstance(client, ChatClient):
            raise ConfigError(f"clients[{name!r}] is a {type(client).__name__}, not a ChatClient: it needs "
                              "build_body(), async send() and async aclose() (see gristmill.llm.types.ChatClient; "
                              "wrap a function in gristmill.testing.FunctionModel)")
    return dict(clients)
