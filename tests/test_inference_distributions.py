"""``temperature`` / ``top_p`` drawn from a distribution per row, deterministically."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.models import InferenceParameters, ModelConfig, ParameterDistribution
from gristmill.testing import FunctionModel, LLMTestServer, provider_and_model

UNIFORM = {"distribution": "uniform", "params": {"low": 0.5, "high": 0.9}}


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def _config(*names: str) -> gm.ConfigBuilder:
    builder = gm.ConfigBuilder().add_column(name="topic", column_type="sampler", sampler_type="category",
                                            params={"values": ["a", "b"]})
    for name in names:
        builder.add_column(name=name, column_type="llm_text", prompt="Say {{ topic }}.")
    return builder


# ------------------------------------------------------------------------------------------------ config

def test_a_number_or_a_distribution() -> None:
    params = InferenceParameters(temperature=UNIFORM, top_p=0.9, max_tokens=20)
    assert isinstance(params.temperature, ParameterDistribution)
    assert params.fixed_params() == {"top_p": 0.9, "max_tokens": 20}
    assert list(params.drawn_params()) == ["temperature"]
    with pytest.raises(gm.ConfigError, match="unknown distribution 'norm'"):
        InferenceParameters(temperature={"distribution": "norm", "params": {}})
    with pytest.raises(gm.ConfigError, match="rejects dist_params"):
        InferenceParameters(top_p={"distribution": "uniform", "params": {"lo": 1}})
    with pytest.raises(gm.ConfigError, match="less than or equal to 2"):
        InferenceParameters(temperature=2.5)


def test_fixed_numbers_keep_their_fingerprint_payload_and_body() -> None:
    model = ModelConfig(alias="m", model="x", provider="p",
                        inference_parameters={"temperature": 0.7, "top_p": 1, "max_tokens": 5})
    # Exactly what a model with fixed numbers dumped before distributions existed.
    assert model.fingerprint_payload()["inference_parameters"] == {
        "temperature": 0.7, "top_p": 1.0, "max_tokens": 5, "seed": None, "stop": None, "extra": {}}
    drawn = ModelConfig(alias="m", model="x", provider="p", inference_parameters={"temperature": UNIFORM})
    assert drawn.fingerprint_payload()["inference_parameters"]["temperature"] == UNIFORM


def test_a_fixed_temperature_body_is_unchanged(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: "ok")
    model = fm.model_config(inference_parameters={"temperature": 0.3, "max_tokens": 8})
    with gm.Mill(tmp_path, model_providers=[fm.provider()], model_configs=[model], clients={fm.name: fm},
                 run_config=gm.RunConfig(show_progress=False)) as mill:
        mill.create(_config("t").build(), num_records=2)
    for call in fm.calls:
        assert {k: v for k, v in call.body.items() if k != "messages"} == {
            "model": "function-model", "temperature": 0.3, "max_tokens": 8}


# ------------------------------------------------------------------------------------------ end to end

def test_draws_differ_per_row_stay_in_range_and_repeat_on_a_rerun(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: "ok")
    model = fm.model_config(inference_parameters={
        "temperature": UNIFORM, "top_p": {"distribution": "normal", "params": {"loc": 0.95, "scale": 0.2}},
        "max_tokens": 8})
    cfg = _config("t", "u").build()

    def run(root: Path) -> list[tuple[float, float]]:
        fm.calls.clear()
        with gm.Mill(root, model_providers=[fm.provider()], model_configs=[model], clients={fm.name: fm},
                     run_config=gm.RunConfig(show_progress=False, batch_size=10)) as mill:
            mill.create(cfg, num_records=30, dataset_name="d")
        return sorted((c.body["temperature"], c.body["top_p"]) for c in fm.calls)

    first = run(tmp_path / "one")
    assert len(first) == 60 and len(set(first)) == 60  # per row and per column
    assert all(0.5 <= t <= 0.9 and round(t, 4) == t for t, _ in first)
    assert all(0.001 <= p <= 1.0 for _, p in first) and any(p == 1.0 for _, p in first)  # clipped
    assert all(c.body["max_tokens"] == 8 for c in fm.calls)
    assert run(tmp_path / "two") == first  # the same dataset name draws the same values


def test_a_fresh_run_after_a_config_change_pays_nothing_again(server: LLMTestServer, tmp_path: Path) -> None:
    provider, model = provider_and_model(server.url, inference_parameters={"temperature": UNIFORM})
    with gm.Mill(tmp_path, model_providers=[provider], model_configs=[model],
                 run_config=gm.RunConfig(show_progress=False, batch_size=8)) as mill:
        mill.create(_config("t").build(), num_records=20, dataset_name="d")
        assert server.stats()["completions"] == 20
        changed = _config("t").add_column(name="x", column_type="expression", expr="{{ topic }}")
        with pytest.warns(UserWarning, match="starting fresh"):
            result = mill.create(changed.build(), num_records=20, dataset_name="d")
    assert server.stats()["completions"] == 20 and server.stats()["duplicates"] == 0
    assert result.run_usage["default"]["cache_hits"] == 20
