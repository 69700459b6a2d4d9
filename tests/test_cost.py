"""Prices and cost: prices in models.yaml / ModelConfig, never fingerprinted; cost of a run in
DatasetResults, WorkflowResults, metadata.json and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.models import ModelPrice
from gristmill.llm.pricing import format_cost, total_cost
from gristmill.testing import LLMTestServer, provider_and_model

ROOT = Path(__file__).resolve().parents[1]
PRICES = {"input_cost_per_million": 3.0, "output_cost_per_million": 15.0}


def _config(model: gm.ModelConfig | None = None) -> gm.DatasetConfig:
    builder = gm.ConfigBuilder(models=[model] if model else None)
    return (builder.add_column(name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 9})
            .add_column(name="t", column_type="llm_text", prompt="Say {{ n }}.").build())


def test_prices_are_optional_validated_and_never_fingerprinted() -> None:
    plain = gm.ModelConfig(alias="default", model="m", provider="p")
    priced = plain.model_copy(update=PRICES)
    assert plain.price() is None
    assert priced.price() == ModelPrice(**PRICES)
    assert _config(plain).fingerprint() == _config(priced).fingerprint()
    with pytest.raises(gm.ConfigError, match="input_cost_per_million"):
        gm.ModelConfig(alias="a", model="m", provider="p", input_cost_per_million=-1)


def test_cost_is_tokens_times_price_per_million() -> None:
    price = ModelPrice(**PRICES)
    usage = {"default": {"requests": 4, "input_tokens": 1_000_000, "output_tokens": 200_000}, "free": {"requests": 1}}
    assert price.cost(usage["default"]) == pytest.approx(3.0 + 3.0)
    assert total_cost(usage, {"default": price}) == pytest.approx(6.0)
    assert total_cost(usage, {}) is None
    assert (format_cost(0.01234), format_cost(1234.5), format_cost(None)) == ("0.0123", "1,234.50", "-")


def test_a_run_records_prices_and_reports_its_cost(tmp_path: Path) -> None:
    with LLMTestServer() as server:
        provider, model = provider_and_model(server.url, **PRICES)
        with gm.Mill(tmp_path, run_config=gm.RunConfig(show_progress=False),
                     model_providers=[provider], model_configs=[model]) as mill:
            results = mill.create(_config(), num_records=15, dataset_name="d")
            wf = mill.compose_workflow("wf")
            wf.add_stage("one", _config(), num_records=5)
            out = wf.run()
    usage = results.usage["default"]
    expected = (usage["input_tokens"] * 3.0 + usage["output_tokens"] * 15.0) / 1e6
    assert usage["input_tokens"] > 0 and results.cost == pytest.approx(expected) == results.run_cost
    stored = json.loads((tmp_path / "d" / "metadata.json").read_text())
    assert stored["prices"] == {"default": PRICES}
    assert out.cost == out.stage_cost("one") and out.cost is not None and out.cost > 0


def test_cli_create_prints_cost_only_for_priced_models(tmp_path: Path, clean_environ: Path) -> None:
    with LLMTestServer() as server:
        (clean_environ / "providers.yaml").write_text(f"- name: test\n  endpoint: {server.url}\n")
        (clean_environ / "models.yaml").write_text(
            "- {alias: default, model: test-model, provider: test, input_cost_per_million: 3.0}\n"
            "- {alias: free, model: test-model, provider: test}\n")
        config = _config().to_dict()
        config["columns"].append({"name": "u", "column_type": "llm_text", "prompt": "Hi {{ n }}",
                                  "model_alias": "free"})
        (tmp_path / "d.yaml").write_text(json.dumps(config))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "250"}
        result = subprocess.run([sys.executable, "-m", "gristmill.cli.main", "create", "d.yaml", "-n", "5"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.strip().startswith("model ")}
    assert "cost=" in lines["default"] and "cost=" not in lines["free"]


def test_cli_status_shows_the_cost_of_a_dataset_and_of_each_workflow_stage(tmp_path: Path) -> None:
    with LLMTestServer() as server:
        provider, model = provider_and_model(server.url, **PRICES)
        with gm.Mill(tmp_path, run_config=gm.RunConfig(show_progress=False),
                     model_providers=[provider], model_configs=[model]) as mill:
            results = mill.create(_config(), num_records=6, dataset_name="d")
            wf = mill.compose_workflow("wf")
            wf.add_stage("one", _config(), num_records=4)
            wf.add_stage("two", gm.ConfigBuilder().add_column(name="u", column_type="expression", expr="{{ t }}"))
            out = wf.run()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "250"}

    def status(path: Path) -> str:
        done = subprocess.run([sys.executable, "-m", "gristmill.cli.main", "status", str(path)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    shown = status(tmp_path / "d")
    assert results.cost is not None and f"{results.cost:.4f} (every run" in shown
    assert f"cost={results.cost:.4f}" in shown  # on the model's line too
    rows = {line.split("│")[1].strip(): line for line in status(out.workflow_dir).splitlines() if "│" in line}
    assert out.cost is not None and rows["one"].rstrip(" │").endswith(f"{out.cost:.4f}")
    assert rows["two"].rstrip(" │").endswith("-")
