"""Test helpers: a real OpenAI-compatible server on 127.0.0.1 with injectable trouble.

- :class:`LLMTestServer`: in-process (a thread), a context manager; ``.url``, ``.stats()``,
  ``.configure(...)``.
- :class:`ServerProcess`: the same server as a subprocess (crash tests, benchmarks).
- :func:`provider_and_model`: a ``ModelProvider`` / ``ModelConfig`` pair pointing at a server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.testing.process import ServerProcess

if TYPE_CHECKING:
    from gristmill.testing.server import LLMTestServer, ServerBehavior, schema_instance


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``python -m gristmill.testing.server`` does not find its own
    # module already imported by this package (runpy warns about that).
    if name in ("LLMTestServer", "ServerBehavior", "schema_instance"):
        from gristmill.testing import server

        return getattr(server, name)
    raise AttributeError(name)


def provider_and_model(url: str, *, alias: str = "default", model: str = "test-model",
                       **model_fields: Any) -> tuple[ModelProvider, ModelConfig]:
    """A provider named 'test' at ``url`` and a model config for it (extra fields go to ModelConfig).

    >>> provider, model = provider_and_model("http://127.0.0.1:8000/v1", max_parallel_requests=4)
    """
    provider = ModelProvider(name="test", endpoint=url)
    return provider, ModelConfig(alias=alias, model=model, provider="test", **model_fields)


__all__ = ["LLMTestServer", "ServerBehavior", "ServerProcess", "provider_and_model", "schema_instance"]
