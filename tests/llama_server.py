"""``python -m llama_cpp.server`` on the shipped SmolLM2 GGUF, for the tests marked llama."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(*extra_args: str) -> Iterator[str]:
    """Start the server (skipping when llama-cpp-python[server] is missing), yield its /v1 URL,
    stop it afterwards. For a module-scoped fixture: ``yield from serve("--embedding", "true")``."""
    if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("llama_cpp.server needs llama-cpp-python[server]")
    from gristmill.llm.local import local_model_path

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(local_model_path()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False",
                             *extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as response:
                json.loads(response.read())
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 120 s")
    yield url
    proc.terminate()
    proc.wait(30)
