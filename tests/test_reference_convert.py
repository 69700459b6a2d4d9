"""Reference-tool (NeMo Data Designer) configs converted and run against the loopback test server.

The configs in ``tests/reference_configs/`` are our own, written from the reference tool's
documented schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

import gristmill as gm
from gristmill.cli.convert import register
from gristmill.config import column_types
from gristmill.convert import ConversionResult, convert_reference_config
from gristmill.testing import LLMTestServer, provider_and_model

CONFIGS = Path(__file__).parent / "reference_configs"


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def _convert(name: str) -> ConversionResult:
    return convert_reference_config(yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8")))


def _loadable(config: dict[str, Any]) -> gm.DatasetConfig:
    """The converted config; validation columns are left out while that column type is not registered."""
    if "validation" not in column_types():
        config = {**config, "columns": [c for c in config["columns"] if c["column_type"] != "validation"]}
    return gm.DatasetConfig.from_dict(config)


def _run(config: gm.DatasetConfig, server: LLMTestServer, path: Path, rows: int) -> pd.DataFrame:
    provider, _ = provider_and_model(server.url)  # the configs name provider 'test', as this one is
    with gm.Mill(path, run_config=gm.RunConfig(batch_size=10, show_progress=False),
                 model_providers=[provider], model_configs=[]) as mill:
        return mill.create(config, num_records=rows).load_dataset()


def _paths(lines: list[Any]) -> list[str]:
    return [line.path for line in lines]


def _seed(path: Path) -> None:
    pd.DataFrame({"topic": ["math", "art", "history", "math", "music", "skip-me"],
                  "level": [1, 3, 2, 2, 1, 3]}).to_parquet(path / "qa_seed.parquet")


# ------------------------------------------------------------------------------------------ product reviews

def test_product_reviews_maps_names_and_lists_what_it_cannot() -> None:
    result = _convert("product_reviews.yaml")
    columns = {c["name"]: c for c in result.config["columns"]}
    assert columns["customer"]["sampler_type"] == "person"
    assert columns["review"]["column_type"] == "llm_text" and columns["review"]["keep_reasoning"]
    assert columns["quality"]["column_type"] == "llm_judge"
    assert columns["purchased_on"]["params"]["end"] == "2024-12-31T23:59:59"  # exclusive there, inclusive here
    assert list(columns["rating"]["conditional_params"]) == ["age >= 65", "age < 21"]
    assert result.config["models"][0] == {"alias": "reviewer", "model": "test-model", "provider": "test",
                                          "max_parallel_requests": 4,
                                          "inference_parameters": {"temperature": 0.7, "max_tokens": 256}}
    assert result.config["constraints"] == [{"target_column": "age", "operator": ">=",
                                             "constraint_type": "scalar_inequality", "rhs": 18}]
    assert _paths(result.unmapped) == ["model_configs[1].inference_parameters.temperature", "profilers"]
    assert "distribution" in result.unmapped[0].reason
    assert _paths(result.notes) == ["columns[5].params.end", "columns[6].extract_reasoning_content"]


def test_product_reviews_runs(server: LLMTestServer, tmp_path: Path) -> None:
    df = _run(_loadable(_convert("product_reviews.yaml").config), server, tmp_path, 30)
    assert len(df) == 30
    assert "scratch" not in df.columns
    assert {"review", "review__reasoning", "quality", "headline"} <= set(df.columns)
    for row in df.to_dict("records"):
        who = row["customer"]
        assert 18 <= who["age"] <= 70 and who["country"] == "United States" and who["uuid"]
        assert row["review"].startswith(f"Echo: {who['first_name']} from {who['city']} rates the {row['product']}")
        assert row["headline"] == f"{row['product'].upper()} ({row['rating']}/5)"
        assert 18 <= row["age"] <= 80 and isinstance(row["age"], int)
        if row["age"] >= 65:
            assert row["rating"] in (4, 5)
        assert re.fullmatch(r"\d\d/\d\d/2024", row["purchased_on"])
        assert row["quality"]["helpfulness"]["score"] in (1, 2, 3)


# ------------------------------------------------------------------------------------------ text to SQL

def test_text_to_sql_maps_code_lang_and_validators() -> None:
    result = _convert("text_to_sql.yaml")
    columns = {c["name"]: c for c in result.config["columns"]}
    assert columns["sql"] == {"name": "sql", "column_type": "llm_code", "prompt": "Write a query that answers: "
                              "{{ question }}", "model_alias": "coder", "code_lang": "sql:postgres"}
    assert columns["sql_check"] == {"name": "sql_check", "column_type": "validation", "target_columns": ["sql"],
                                    "validator": "sql", "params": {"dialect": "postgres"}, "batch_size": 20}
    assert "api_check" not in columns and "embedding" not in columns
    assert columns["task_id"]["params"] == {"prefix": "task-", "short_form": False, "uppercase": False}
    assert _paths(result.unmapped) == ["columns[6]", "columns[8]"]
    assert "'remote' validators" in result.unmapped[0].reason
    assert "'embedding' is not supported" in result.unmapped[1].reason
    sql = _loadable(result.config).columns[3]
    assert (sql.code_fence, sql.sql_dialect) == ("sql", "postgres")  # type: ignore[attr-defined]


def _without(config: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {**config, "columns": [c for c in config["columns"] if c["name"] not in names]}


def test_text_to_sql_runs(server: LLMTestServer, tmp_path: Path) -> None:
    config = _without(_convert("text_to_sql.yaml").config, {"sql", "summary", "sql_check"})
    df = _run(_loadable(config), server, tmp_path, 12)
    assert len(df) == 12
    assert set(df["industry"]) <= {"retail", "healthcare", "finance"}
    assert df["task_id"].str.fullmatch(r"task-[0-9a-f-]{36}").all()
    assert df["question"].str.startswith("Echo: Ask a business question about a").all()
    assert df["script"].str.fullmatch(r"# snippet \d+\nprint\(\d+\)\n?").all()


def test_sql_dialect_column_is_fenced_as_sql(server: LLMTestServer, tmp_path: Path) -> None:
    config = _without(_convert("text_to_sql.yaml").config, {"sql_check", "script"})
    df = _run(_loadable(config), server, tmp_path, 6)
    assert df["sql"].notna().all() and df["sql"].str.startswith("# snippet").all()
    assert server.stats()["requests"] == 6 * 3  # question, sql, summary: no correction needed


# ------------------------------------------------------------------------------------------ seeded QA

def test_seeded_qa_maps_the_seed_and_refuses_compound_conditions() -> None:
    result = _convert("seeded_qa.yaml")
    assert result.config["seed"] == {"source": "qa_seed.parquet", "sampling_strategy": "ordered",
                                     "selection_strategy": {"selection_type": "partition_block", "index": 1,
                                                            "num_partitions": 2}}
    assert [c["name"] for c in result.config["columns"]] == ["difficulty", "question", "answer"]
    assert result.config["columns"][1]["skip"] == "{{ topic == 'skip-me' }}"
    assert result.config["models"][0]["inference_parameters"] == {"extra": {"top_k": 20}}
    assert _paths(result.unmapped) == ["columns[2].conditional_params[\"level > 1 and topic == 'math'\"]"]
    assert _paths(result.notes) == ["columns[0]", "columns[1]"]


def test_seeded_qa_runs(server: LLMTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path)
    monkeypatch.chdir(tmp_path)
    df = _run(_loadable(_convert("seeded_qa.yaml").config), server, tmp_path / "out", 6)
    assert len(df) == 6
    assert list(df["topic"]) == ["math", "music", "skip-me"] * 2  # the second half of the seed, in order
    assert all(d == "hard" for d, level in zip(df["difficulty"], df["level"], strict=True) if level > 2)
    for row in df.to_dict("records"):
        if row["topic"] == "skip-me":
            assert pd.isna(row["question"])
        else:
            assert row["question"].startswith(f"Echo: Write a {row['difficulty']} question about {row['topic']} "
                                              f"(level {row['level']}).")
            assert isinstance(row["answer"]["answer"], str)


def test_index_range_keeps_its_inclusive_end() -> None:
    result = _convert("index_range_seed.yaml")
    assert result.config["seed"]["selection_strategy"] == {"selection_type": "index_range", "start": 1, "end": 3}


def test_index_range_selects_rows_start_to_end_inclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path)
    monkeypatch.chdir(tmp_path)
    with gm.Mill(tmp_path / "out", run_config=gm.RunConfig(show_progress=False)) as mill:
        df = mill.create(_loadable(_convert("index_range_seed.yaml").config), num_records=3).load_dataset()
    assert list(df["copy"]) == ["art", "history", "math"]


# ------------------------------------------------------------------------------------------ unmapped lines

def test_unknown_fields_are_listed_with_their_path() -> None:
    result = convert_reference_config({
        "columns": [{"name": "t", "column_type": "llm-text", "prompt": "p", "model_alias": "m",
                     "tool_alias": "search", "multi_modal_context": [{"modality": "image"}], "with_trace": "none",
                     "made_up": 1},
                    {"name": "x", "column_type": "custom", "generator_function": "f"},
                    {"name": "p", "column_type": "sampler", "sampler_type": "person",
                     "params": {"with_synthetic_personas": True, "sex": "Female"}}],
        "tool_configs": [{"tool_alias": "search"}],
        "model_providers": [{"name": "nv", "endpoint": "https://example.invalid/v1", "api_key": "NVIDIA_API_KEY"}],
    })
    assert [str(line) for line in result.unmapped] == [
        "columns[0].tool_alias: tool use over MCP is not supported yet",
        "columns[0].multi_modal_context: multimodal context is not supported yet",
        "columns[0].made_up: no gristmill equivalent",
        "columns[1]: column 'x': column_type 'custom' is not supported",
        "columns[2].params.with_synthetic_personas: persona fields come from the reference tool's managed datasets",
        "tool_configs: tool use over MCP is not supported yet",
    ]
    assert result.config["columns"][1]["params"] == {"sex": "Female"}
    assert result.providers == [{"name": "nv", "endpoint": "https://example.invalid/v1", "api_key": "$NVIDIA_API_KEY"}]
    gm.ModelProvider(**result.providers[0])


# ------------------------------------------------------------------------------------------ the command

def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("version")  # a second command, so typer keeps 'convert' as a sub-command
    def version() -> None:
        """Unused."""

    return app


def test_cli_prints_yaml_and_the_unmapped_lines_with_their_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["convert", str(CONFIGS / "text_to_sql.yaml")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["columns"][3]["code_lang"] == "sql:postgres"
    name = CONFIGS / "text_to_sql.yaml"
    assert f"not mapped: {name}:39: columns[6]: column 'api_check'" in result.stderr
    assert f"not mapped: {name}:55: columns[8]: column 'embedding'" in result.stderr
    assert "columns[" not in result.stdout


def test_cli_writes_providers_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "ref.yaml"
    source.write_text("model_providers:\n  - {name: nv, endpoint: 'http://127.0.0.1:1/v1', api_key: NV_KEY}\n"
                      "columns:\n  - {name: n, column_type: sampler, sampler_type: uniform,\n"
                      "     params: {low: 0, high: 1}}\n", encoding="utf-8")
    without = CliRunner().invoke(_app(), ["convert", str(source)])
    assert "not mapped: " + f"{source}:1: model_providers: providers (nv) belong in providers.yaml" in without.stderr
    written = tmp_path / "providers.yaml"
    with_file = CliRunner().invoke(_app(), ["convert", str(source), "--providers", str(written)])
    assert with_file.exit_code == 0
    assert yaml.safe_load(written.read_text(encoding="utf-8")) == [
        {"name": "nv", "endpoint": "http://127.0.0.1:1/v1", "api_key": "$NV_KEY"}]
    assert gm.DatasetConfig.from_dict(yaml.safe_load(with_file.stdout)).columns[0].name == "n"


def test_cli_refuses_a_file_that_is_not_a_config(tmp_path: Path) -> None:
    source = tmp_path / "list.yaml"
    source.write_text("- 1\n- 2\n", encoding="utf-8")
    result = CliRunner().invoke(_app(), ["convert", str(source)])
    assert result.exit_code == 1
    assert "must hold a mapping with 'columns'" in result.stderr


def test_ansi_sql_validator_uses_the_default_dialect() -> None:
    result = convert_reference_config({"columns": [
        {"name": "q", "column_type": "llm-code", "prompt": "p", "model_alias": "m", "code_lang": "sql:ansi"},
        {"name": "check", "column_type": "validation", "target_columns": ["q"], "validator_type": "code",
         "validator_params": {"code_lang": "sql:ansi"}},
        {"name": "py", "column_type": "validation", "target_columns": ["q"], "validator_type": "code",
         "validator_params": {"code_lang": "python"}}]})
    check, py = result.config["columns"][1:]
    assert (check["validator"], check["params"]) == ("sql", {"dialect": ""})  # sqlglot's ANSI
    assert py == {"name": "py", "column_type": "validation", "target_columns": ["q"], "validator": "python"}
    assert result.unmapped == []
