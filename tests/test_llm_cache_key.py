"""The response cache keys on provider and model names, never on how the endpoint is spelled.

A trailing slash, ``localhost`` for ``127.0.0.1`` or a local server back on another port must
not re-pay a single cached request; ``ModelProvider.cache_namespace`` separates answers on
purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.llm.registry import ResolvedModel
from gristmill.testing import LLMTestServer, provider_and_model

MODEL = ModelConfig(alias="default", model="test-model", provider="test")


def _identity(**provider_fields: str) -> str:
    provider = ModelProvider.model_validate({"name": "test", "endpoint": "http://127.0.0.1:8000/v1",
                                             **provider_fields})
    return ResolvedModel(model=MODEL, provider=provider).identity


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8000/v1/", "http://localhost:8000/v1",
                                      "http://127.0.0.1:9999/v1", "https://gpu-box.internal/v1"])
def test_identity_ignores_the_endpoint(endpoint: str) -> None:
    assert _identity(endpoint=endpoint) == _identity()


def test_identity_names_provider_model_and_namespace() -> None:
    assert _identity(name="other") != _identity()
    assert _identity(cache_namespace="qwen-7b") != _identity()
    assert _identity(cache_namespace="qwen-7b") == _identity(cache_namespace="qwen-7b", endpoint="http://x/v1")
    other_model = ResolvedModel(model=MODEL.model_copy(update={"model": "m2"}),
                                provider=ModelProvider(name="test", endpoint="http://127.0.0.1:8000/v1"))
    assert other_model.identity != _identity()


def _config(extra_column: bool = False) -> gm.DatasetConfig:
    builder = (gm.ConfigBuilder()
               .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
               .add_column(name="a", column_type="llm_text", prompt="Describe {{ id }}.")
               .add_column(name="b", column_type="llm_text", prompt="Name {{ id }}."))
    if extra_column:  # changes the dataset's fingerprint, not a single LLM request
        builder.add_column(name="label", column_type="expression", expr="item {{ id }}")
    return builder.build()


def _mill(tmp_path: Path, endpoint: str, **provider_fields: object) -> gm.Mill:
    provider, model = provider_and_model(endpoint, max_parallel_requests=8)
    provider = provider.model_copy(update=provider_fields)
    return gm.Mill(tmp_path / "artifacts", model_providers=[provider], model_configs=[model],
                   run_config=gm.RunConfig(batch_size=1000, seed=11, show_progress=False))


def _first_run(tmp_path: Path, server: LLMTestServer) -> None:
    with _mill(tmp_path, server.url) as mill:
        mill.create(_config(), num_records=10, dataset_name="d")
    assert server.stats()["requests"] == 20


def _rerun_changed(tmp_path: Path, endpoint: str, **provider_fields: object) -> gm.DatasetResults:
    """A non-LLM change: the dataset starts fresh in a new directory, importing the old answers."""
    with _mill(tmp_path, endpoint, **provider_fields) as mill, pytest.warns(UserWarning, match="starting fresh"):
        return mill.create(_config(extra_column=True), num_records=10, dataset_name="d", resume="if-possible")


SPELLINGS: dict[str, Callable[[str], str]] = {
    "trailing slash": lambda url: url + "/",
    "localhost": lambda url: url.replace("127.0.0.1", "localhost"),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_another_spelling_of_the_endpoint_pays_nothing(tmp_path: Path, spelling: str) -> None:
    with LLMTestServer() as server:
        _first_run(tmp_path, server)
        server.reset_stats()
        result = _rerun_changed(tmp_path, SPELLINGS[spelling](server.url))
        assert server.stats()["requests"] == 0
    assert result.run_usage["default"]["cache_hits"] == 20
    assert result.load_dataset()["a"].notna().all()


def test_a_local_server_back_on_another_port_pays_nothing(tmp_path: Path) -> None:
    with LLMTestServer() as first:
        _first_run(tmp_path, first)
        old_port = first.port
    with LLMTestServer() as second:
        assert second.port != old_port
        result = _rerun_changed(tmp_path, second.url)
        assert second.stats()["requests"] == 0
    assert result.load_dataset()["b"].notna().all()


def test_a_workflow_stage_rerun_against_a_moved_endpoint_pays_only_for_the_change(tmp_path: Path) -> None:
    def run(endpoint: str, b_prompt: str) -> None:
        cfg = (gm.ConfigBuilder()
               .add_column(name="id", column_type="sampler", sampler_type="uuid", params={})
               .add_column(name="a", column_type="llm_text", prompt="Describe {{ id }}.")
               .add_column(name="b", column_type="llm_text", prompt=b_prompt)
               .build())
        with _mill(tmp_path, endpoint) as mill:
            wf = mill.compose_workflow("wf")
            wf.add_stage("items", cfg, num_records=10)
            wf.run(resume="if-possible")

    with LLMTestServer() as first:
        run(first.url, "Name {{ id }}.")
        assert first.stats()["requests"] == 20
    with LLMTestServer() as second:
        run(second.url.replace("127.0.0.1", "localhost") + "/", "Rename {{ id }}.")
        assert second.stats()["requests"] == 10  # column 'a' came from the workflow's cache


def test_cache_namespace_keeps_answers_apart(tmp_path: Path) -> None:
    with LLMTestServer() as server:
        _first_run(tmp_path, server)
        server.reset_stats()
        _rerun_changed(tmp_path, server.url, cache_namespace="another-model-behind-the-same-name")
        assert server.stats()["requests"] == 20
