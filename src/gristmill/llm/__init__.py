"""The LLM layer: endpoints, throttling, retries, parsing and the response cache.

=====================  ==============================================================
module                 role
=====================  ==============================================================
``registry``           aliases -> (model, provider), from YAML in the gristmill home or arguments
``runtime``            ``LLMRuntime`` (one per Mill) and ``ModelHandle.complete``: throttle + retries
``throttle``           ``AdaptiveThrottle``: AIMD concurrency and Retry-After pauses per (provider, model)
``http``               the asyncio HTTP/1.1 keep-alive client (chosen by ``bench/bench_http.py``)
``openai``             OpenAI-compatible chat completions over ``http``
``local``              the embedded SmolLM2 model on llama-cpp-python
``cache``              ``ResponseCache``: SQLite (WAL) store of parsed answers
``parsing``/``schema`` reasoning, code and JSON extraction; JSON-schema validation
``types``              values passed between them
``inventory``          ``describe_models`` / ``check_models``: what is configured, and does it answer
=====================  ==============================================================

Column generators (``engine/generators/llm.py``) are the only callers outside this package,
besides the Mill, which builds the runtime. The names below are this layer's public API (the
CLI uses only these); they load on first use (PEP 562), so importing one submodule, or this
package for one name, does not load the HTTP client or the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gristmill.lazy import lazy_exports

# Public name -> its module, read by ``__getattr__``; ``__all__`` and the TYPE_CHECKING imports
# list the same names (checked by tests/test_import_time.py).
_EXPORTS: dict[str, str] = {
    "ModelCheck": "gristmill.llm.inventory",
    "ModelSummary": "gristmill.llm.inventory",
    "ResponseCache": "gristmill.llm.cache",
    "check_models": "gristmill.llm.inventory",
    "describe_models": "gristmill.llm.inventory",
    "gristmill_home": "gristmill.llm.registry",
}

__all__ = [
    "ModelCheck",
    "ModelSummary",
    "ResponseCache",
    "check_models",
    "describe_models",
    "gristmill_home",
]

if TYPE_CHECKING:
    from gristmill.llm.cache import ResponseCache
    from gristmill.llm.inventory import ModelCheck, ModelSummary, check_models, describe_models
    from gristmill.llm.registry import gristmill_home


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
