"""Test helpers: an in-process fake model, and a real OpenAI-compatible server on 127.0.0.1.

- :class:`FunctionModel`: a client whose answers come from a Python function (no socket);
  pass it as ``Mill(..., clients={fm.name: fm})``. :class:`ChatRequest` is what the function
  gets, :class:`FailedResponse` what it returns to simulate a 429, a 5xx or a timeout.
- :class:`LLMTestServer`: in-process (a thread), a context manager; ``.url``, ``.stats()``,
  ``.configure(...)``. For tests of HTTP behaviour.
- :class:`ServerProcess`: the same server as a subprocess (crash tests, benchmarks).
- :func:`provider_and_model`: a ``ModelProvider`` / ``ModelConfig`` pair pointing at a server.

Names load on first use (PEP 562), so ``import gristmill.testing`` stays cheap and
``python -m gristmill.testing.server`` does not find its own module already imported (runpy
warns about that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gristmill.lazy import lazy_exports

if TYPE_CHECKING:
    from gristmill.config.models import ModelConfig, ModelProvider
    from gristmill.testing.function_model import ChatRequest as ChatRequest
    from gristmill.testing.function_model import FailedResponse as FailedResponse
    from gristmill.testing.function_model import FunctionModel as FunctionModel
    from gristmill.testing.process import ServerProcess as ServerProcess
    from gristmill.testing.server import LLMTestServer as LLMTestServer
    from gristmill.testing.server import ServerBehavior as ServerBehavior
    from gristmill.testing.server import schema_instance as schema_instance
    from gristmill.testing.server import solid_png as solid_png

# Public name -> its module (one line per name; its TYPE_CHECKING import above too).
_EXPORTS: dict[str, str] = {
    "ChatRequest": "gristmill.testing.function_model",
    "FailedResponse": "gristmill.testing.function_model",
    "FunctionModel": "gristmill.testing.function_model",
    "LLMTestServer": "gristmill.testing.server",
    "ServerBehavior": "gristmill.testing.server",
    "ServerProcess": "gristmill.testing.process",
    "schema_instance": "gristmill.testing.server",
    "solid_png": "gristmill.testing.server",
}




def provider_and_model(url: str, *, alias: str = "default", model: str = "test-model",
                       **model_fields: Any) -> tuple[ModelProvider, ModelConfig]:
    """A provider named 'test' at ``url`` and a model config for it (extra fields go to ModelConfig).

    >>> provider, model = provider_and_model("http://127.0.0.1:8000/v1", max_parallel_requests=4)
    """
    from gristmill.config.models import ModelConfig, ModelProvider

    provider = ModelProvider(name="test", endpoint=url)
    return provider, ModelConfig(alias=alias, model=model, provider="test", **model_fields)


__all__ = sorted([*_EXPORTS, "provider_and_model"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
