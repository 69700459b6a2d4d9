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
=====================  ==============================================================

Column generators (``engine/generators/llm.py``) are the only callers outside this package,
besides the Mill, which builds the runtime, and the CLI.
"""
