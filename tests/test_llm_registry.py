"""Model registry: YAML files in GRISTMILL_HOME, arguments, dataset models, the local default."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.models import ModelConfig, ModelProvider
from gristmill.llm.registry import ModelRegistry
from gristmill.llm.runtime import LLMRuntime

PROVIDERS = """
- name: vllm
  endpoint: http://127.0.0.1:8000/v1
  api_key: $GM_VLLM_API_KEY
"""
MODELS = """
models:
  - alias: default
    model: qwen
    provider: vllm
    inference_parameters: {temperature: 0.3, max_tokens: 64}
  - alias: judge
    model: qwen-big
    provider: vllm
"""


def write_home(home: Path) -> None:
    (home / "providers.yaml").write_text(PROVIDERS)
    (home / "models.yaml").write_text(MODELS)


def test_loads_yaml_from_gristmill_home(clean_environ: Path) -> None:
    write_home(clean_environ)
    registry = ModelRegistry.load()
    assert registry.aliases() == ["default", "judge"]
    resolved = registry.resolve("default")
    assert resolved.provider.endpoint == "http://127.0.0.1:8000/v1"
    assert resolved.model.inference_parameters.temperature == 0.3
    assert resolved.identity == "vllm|qwen"  # provider + model names, never the endpoint


def test_arguments_and_paths_override_home(clean_environ: Path, tmp_path: Path) -> None:
    write_home(clean_environ)
    (tmp_path / "m.yaml").write_text("- {alias: only, model: x, provider: vllm}\n")
    registry = ModelRegistry.load(models=tmp_path / "m.yaml")
    assert registry.aliases() == ["only"]
    registry = ModelRegistry.load(providers=[ModelProvider(name="p", endpoint="http://h/v1")],
                                  models=[ModelConfig(alias="a", model="m", provider="p")])
    assert registry.aliases() == ["a"]


def test_dataset_models_take_precedence(clean_environ: Path) -> None:
    write_home(clean_environ)
    registry = ModelRegistry.load()
    local = ModelConfig(alias="default", model="other", provider="vllm")
    assert registry.resolve("default", [local]).model.model == "other"


def test_unknown_alias_names_the_known_ones(clean_environ: Path) -> None:
    write_home(clean_environ)
    with pytest.raises(gm.ConfigError, match=r"unknown model alias 'nope'; known aliases: default, judge"):
        ModelRegistry.load().resolve("nope")


def test_unknown_provider_is_a_config_error() -> None:
    registry = ModelRegistry.load(providers=[ModelProvider(name="p", endpoint="http://h/v1")],
                                  models=[ModelConfig(alias="a", model="m", provider="missing")])
    with pytest.raises(gm.ConfigError, match="provider 'missing'"):
        registry.resolve("a")


def test_invalid_yaml_entry_is_a_config_error(clean_environ: Path) -> None:
    (clean_environ / "models.yaml").write_text("- {alias: a, model: m}\n")
    with pytest.raises(gm.ConfigError, match="models.yaml"):
        ModelRegistry.load()


@pytest.mark.parametrize("entry", [
    "- {name: leaky, endpoint: 42, api_key: sk-literal-999, extra_headers: {X-Token: hdr-secret-777}}\n",
    "- {endpoint: http://h/v1, api_key: sk-literal-999, extra_headers: {X-Token: hdr-secret-777}}\n",
])
def test_invalid_provider_entry_error_never_echoes_secrets(clean_environ: Path, entry: str) -> None:
    (clean_environ / "providers.yaml").write_text(entry)
    with pytest.raises(gm.ConfigError) as info:
        ModelRegistry.load()
    message = str(info.value)
    assert "providers.yaml" in message and ("'leaky'" in message or "#1" in message)
    assert "sk-literal-999" not in message and "hdr-secret-777" not in message
    assert info.value.__cause__ is None  # pydantic's error (which quotes the input) is not chained


def test_provider_repr_hides_the_key_and_headers() -> None:
    provider = ModelProvider(name="p", endpoint="http://h/v1", api_key="sk-literal-999",
                             extra_headers={"X-Token": "hdr-secret-777"})
    for text in (repr(provider), str(provider)):
        assert "sk-literal-999" not in text and "hdr-secret-777" not in text and "http://h/v1" in text


def test_default_falls_back_to_the_local_model_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    registry = ModelRegistry.load()
    with caplog.at_level(logging.WARNING, logger="gristmill"):
        first = registry.resolve("default")
        registry.resolve("default")
    assert first.provider.provider_type == "local"
    warnings = [r for r in caplog.records if "tiny model" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()


def test_no_local_fallback_once_a_provider_is_configured(clean_environ: Path) -> None:
    (clean_environ / "providers.yaml").write_text(PROVIDERS)
    with pytest.raises(gm.ConfigError, match="unknown model alias 'default'"):
        ModelRegistry.load().resolve("default")


def test_check_aliases_names_the_missing_key_variable(clean_environ: Path) -> None:
    write_home(clean_environ)
    runtime = LLMRuntime(ModelRegistry.load())
    with pytest.raises(gm.ModelAuthError, match="GM_VLLM_API_KEY"):
        runtime.check_aliases({"default"})
    with pytest.raises(gm.ConfigError, match="unknown model alias"):
        runtime.check_aliases({"missing"})


def test_check_aliases_passes_with_the_key_set(clean_environ: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_home(clean_environ)
    monkeypatch.setenv("GM_VLLM_API_KEY", "k")
    LLMRuntime(ModelRegistry.load()).check_aliases({"default", "judge"})


def test_secrets_and_transport_stay_out_of_fingerprints() -> None:
    provider = ModelProvider(name="p", endpoint="http://h/v1", api_key="sk-secret", extra_headers={"X": "y"})
    assert "sk-secret" not in str(provider.fingerprint_payload())
    model = ModelConfig(alias="a", model="m", provider="p", max_parallel_requests=3, timeout=5, max_retries=1)
    payload = model.fingerprint_payload()
    for name in ("max_parallel_requests", "timeout", "max_retries", "retry_backoff", "max_rate_limit_wait"):
        assert name not in payload
    assert payload["model"] == "m" and "inference_parameters" in payload


def test_mill_validate_uses_the_registry(tmp_path: Path) -> None:
    cfg = (gm.ConfigBuilder()
           .add_column(name="x", column_type="llm_text", prompt="hi", model_alias="ghost")
           .build())
    with gm.Mill(tmp_path, model_providers=[ModelProvider(name="p", endpoint="http://h/v1")],
                 model_configs=[]) as mill:
        with pytest.raises(gm.ConfigError, match="'ghost'"):
            mill.validate(cfg)
