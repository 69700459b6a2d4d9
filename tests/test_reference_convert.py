"""Reference-tool (NeMo Data Designer) configs converted and run against the loopback test server.

The configs in ``tests/reference_configs/`` and those written inline below are our own, written
from the reference tool's documented schema.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
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
from gristmill.config.tools import ToolConfig, ToolProvider
from gristmill.convert import ConversionResult, convert_reference_config
from gristmill.llm.mcp import ToolRuntime
from gristmill.testing import LLMTestServer, provider_and_model, solid_png

CONFIGS = Path(__file__).parent / "reference_configs"
ROOT = Path(__file__).resolve().parents[1]


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
    assert result.config["models"][1]["inference_parameters"] == {
        "temperature": {"distribution": "uniform", "params": {"low": 0.2, "high": 0.8}}}
    assert _paths(result.unmapped) == ["profilers"]
    assert _paths(result.notes) == ["model_configs[1].inference_parameters.temperature", "columns[5].params.end",
                                    "columns[6].extract_reasoning_content"]


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
    assert "api_check" not in columns
    assert columns["embedding"] == {"name": "embedding", "column_type": "embedding", "target_column": "question",
                                    "model_alias": "coder"}
    assert columns["task_id"]["params"] == {"prefix": "task-", "short_form": False, "uppercase": False}
    assert _paths(result.unmapped) == ["columns[6]"]
    assert "'remote' validators" in result.unmapped[0].reason
    sql = _loadable(result.config).columns[3]
    assert (sql.code_fence, sql.sql_dialect) == ("sql", "postgres")  # type: ignore[attr-defined]


def _without(config: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {**config, "columns": [c for c in config["columns"] if c["name"] not in names]}


def test_text_to_sql_runs(server: LLMTestServer, tmp_path: Path) -> None:
    # 'embedding' names the chat model 'coder': the reference config's own mistake, refused before a request.
    config = _without(_convert("text_to_sql.yaml").config, {"sql", "summary", "sql_check", "embedding"})
    df = _run(_loadable(config), server, tmp_path, 12)
    assert len(df) == 12
    assert set(df["industry"]) <= {"retail", "healthcare", "finance"}
    assert df["task_id"].str.fullmatch(r"task-[0-9a-f-]{36}").all()
    assert df["question"].str.startswith("Echo: Ask a business question about a").all()
    assert df["script"].str.fullmatch(r"# snippet \d+\nprint\(\d+\)\n?").all()


def test_sql_dialect_column_is_fenced_as_sql(server: LLMTestServer, tmp_path: Path) -> None:
    config = _without(_convert("text_to_sql.yaml").config, {"sql_check", "script", "embedding"})
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


# ------------------------------------------------------------------------------------------ traces, images, tools

def _llm(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "column_type": "llm-text", "prompt": "Describe it.", "model_alias": "m", **fields}


def _png(path: Path, rgb: tuple[int, int, int] = (200, 30, 30), size: int = 2) -> bytes:
    """A real PNG file of one colour."""
    data = solid_png(rgb, size)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize(("written", "ours"), [
    ("last_message", "last_message"), ("ALL_MESSAGES", "all_messages"), ("TraceType.ALL_MESSAGES", "all_messages"),
    ("Last_Message", "last_message"), ("none", None), ("NONE", None)])
def test_with_trace_maps_in_any_case(written: str, ours: str | None) -> None:
    result = convert_reference_config({"columns": [_llm(with_trace=written)]})
    column = result.config["columns"][0]
    assert column.get("with_trace") == ours
    assert result.unmapped == []
    assert _paths(result.notes) == (["columns[0].with_trace"] if ours else [])
    loaded = gm.DatasetConfig.from_dict(result.config).columns[0]
    assert loaded.with_trace == (ours or "none")  # type: ignore[attr-defined]


def test_an_unknown_with_trace_is_listed() -> None:
    result = convert_reference_config({"columns": [_llm(with_trace="everything")]})
    assert "with_trace" not in result.config["columns"][0]
    assert [str(line) for line in result.unmapped] == [
        "columns[0].with_trace: with_trace 'everything' is not one of none, last_message, all_messages"]


def test_multi_modal_context_maps_image_and_audio_contexts() -> None:
    contexts = [
        {"modality": "image", "column_name": "link", "data_type": "url"},
        {"modality": "image", "column_name": "photo", "data_type": "base64", "image_format": "png"},
        {"column_name": "scan", "data_type": "BASE64", "image_format": "JPG"},  # legacy: no modality is an image
        {"modality": "Modality.IMAGE", "column_name": "any"},                  # auto-detected there
        {"modality": "image", "column_name": "thumb", "image_format": "webp"},
        {"modality": "audio", "column_name": "clip", "data_type": "base64", "audio_format": "mp3"},
        {"modality": "video", "column_name": "movie", "data_type": "url"},
        {"modality": "audio", "column_name": "call", "data_type": "url"},
        {"modality": "image", "column_name": "odd", "data_type": "url", "crop": [0, 0, 9, 9]},
    ]
    result = convert_reference_config({"columns": [_llm(multi_modal_context=contexts)]})
    assert result.config["columns"][0]["multi_modal_context"] == [
        {"column": "link", "type": "image", "format": "url"},
        {"column": "photo", "type": "image", "format": "base64", "media_type": "image/png"},
        {"column": "scan", "type": "image", "format": "base64", "media_type": "image/jpeg"},
        {"column": "any", "type": "image", "format": "url"},
        {"column": "thumb", "type": "image", "format": "base64", "media_type": "image/webp"},
        {"column": "clip", "type": "audio", "format": "base64", "media_type": "mp3"},
        {"column": "odd", "type": "image", "format": "url"},
    ]
    where = "columns[0].multi_modal_context"
    assert [str(line) for line in result.unmapped] == [
        f"{where}[6]: modality 'video': gristmill sends images and audio only",
        f"{where}[7]: audio given as URLs: gristmill sends audio as data (format: path or base64), as "
        "OpenAI-compatible endpoints take it",
        f"{where}[8].crop: no gristmill equivalent"]
    assert _paths(result.notes) == [f"{where}[3]", f"{where}[4]"]
    assert "format: url (use path for local files, base64 for bare base64 data)" in result.notes[0].reason
    column = gm.DatasetConfig.from_dict({**result.config, "columns": [
        {"name": n, "column_type": "expression", "expr": "x"}
        for n in ("link", "photo", "scan", "any", "thumb", "clip", "odd")] + result.config["columns"]}).columns[-1]
    assert column.required_columns() == {"link", "photo", "scan", "any", "thumb", "clip", "odd"}


def test_tool_alias_and_tool_configs_map() -> None:
    result = convert_reference_config({
        "columns": [_llm(tool_alias="research", with_trace="all_messages")],
        "tool_configs": [{"tool_alias": "research", "providers": ["docs", "search"], "allow_tools": ["lookup"],
                          "max_tool_call_turns": 4, "timeout_sec": 30.0},
                         {"tool_alias": "web", "providers": ["search"], "allow_tools": None,
                          "max_tool_call_turns": 80}]})
    assert result.config["columns"][0]["tool_alias"] == "research"
    assert result.tool_configs == [
        {"alias": "research", "providers": ["docs", "search"], "allow_tools": ["lookup"], "max_tool_call_turns": 4,
         "timeout": 30.0},
        {"alias": "web", "providers": ["search"], "max_tool_call_turns": 50}]
    assert result.unmapped == []
    assert [str(line) for line in result.notes if "tool" in line.path] == [
        "columns[0].tool_alias: tool config 'research' must be declared in tools.yaml (docs/tools.md)",
        "tool_configs[1].max_tool_call_turns: at most 50 here; written as 50",
        "tool_configs[1]: the reference tool waits for a tool call without limit; here one times out after 60 s "
        "(set timeout)",
        "tool_configs: the MCP servers docs, search are declared in Python in the reference tool: add them to "
        "tools.yaml under tool_providers by hand (docs/tools.md)"]
    assert [ToolConfig(**config).alias for config in result.tool_configs] == ["research", "web"]
    assert gm.DatasetConfig.from_dict(result.config).columns[0].tool_alias == "research"  # type: ignore[attr-defined]


def test_converted_trace_and_images_run(server: LLMTestServer, tmp_path: Path) -> None:
    png = _png(tmp_path / "red.png")
    encoded = base64.b64encode(png).decode("ascii")
    pd.DataFrame({"item": ["a", "b", "c"], "photo": [encoded] * 3,
                  "link": [f"data:image/png;base64,{encoded}"] * 3}).to_parquet(tmp_path / "photos.parquet")
    result = convert_reference_config(yaml.safe_load(f"""
        model_configs:
          - {{alias: seer, model: test-model, provider: test}}
        seed_config:
          source: {{seed_type: local, path: {tmp_path / 'photos.parquet'}}}
        columns:
          - name: caption
            column_type: llm-text
            model_alias: seer
            prompt: "Describe item {{{{ item }}}}."
            with_trace: ALL_MESSAGES
            multi_modal_context:
              - {{modality: image, column_name: photo, data_type: base64, image_format: png}}
              - {{modality: image, column_name: link, data_type: url}}
        """))
    assert result.unmapped == []
    df = _run(_loadable(result.config), server, tmp_path / "out", 3)
    assert server.stats()["completions"] == 3
    for item, caption, trace in zip(df["item"], df["caption"], df["caption__trace"], strict=True):
        assert caption.startswith(f"Echo: Describe item {item}.")
        user, answer = list(trace)
        assert user["role"] == "user" and answer["role"] == "assistant"
        assert user["content"].count("[image: image/png, ") == 2  # both contexts were sent as images
        assert encoded not in user["content"]


def test_cli_writes_tool_configs_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "ref.yaml"
    source.write_text("columns:\n"
                      "  - {name: a, column_type: llm-text, prompt: p, model_alias: m, tool_alias: research}\n"
                      "tool_configs:\n"
                      "  - tool_alias: research\n"
                      "    providers: [docs]\n"
                      "    timeout_sec: 20\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gristmill.cli.main", "convert", str(source), *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    without = run()
    assert without.returncode == 0, without.stderr
    assert (f"not mapped: {source}:3: tool_configs: tool configs (research) belong in tools.yaml; rerun with "
            "--tools tools.yaml") in without.stderr
    assert f"note: {source}:2: columns[0].tool_alias: tool config 'research' must be declared" in without.stderr
    written = tmp_path / "tools.yaml"
    assert not written.exists()
    with_file = run("--tools", str(written))
    assert with_file.returncode == 0, with_file.stderr
    assert f"wrote 1 tool config(s) to {written}" in with_file.stderr
    assert f"note: {source}:3: tool_configs: the MCP servers docs are declared in Python" in with_file.stderr
    assert "rerun with --tools" not in with_file.stderr
    assert yaml.safe_load(written.read_text(encoding="utf-8")) == {
        "tool_configs": [{"alias": "research", "providers": ["docs"], "timeout": 20}]}
    assert yaml.safe_load(with_file.stdout)["columns"][0]["tool_alias"] == "research"
    # gristmill reads the file as tools.yaml once the MCP server is added beside it.
    runtime = ToolRuntime.load(providers=[ToolProvider(name="docs", command="docs-server")], configs=written)
    assert runtime.config("research").timeout == 20


# ------------------------------------------------------------------------------------------ models

def test_generation_types_and_column_options_map() -> None:
    result = convert_reference_config({
        "model_configs": [
            {"alias": "chat", "model": "test-model", "provider": "test",
             "inference_parameters": {"generation_type": "chat-completion", "max_tokens": 20}},
            {"alias": "embedder", "model": "test-model", "provider": "test",
             "inference_parameters": {"generation_type": "embedding", "dimensions": 8, "encoding_format": "float",
                                      "max_parallel_requests": 2}},
            {"alias": "inferred", "model": "test-model", "provider": "test",
             "inference_parameters": {"encoding_format": "base64"}},
            {"alias": "painter", "model": "dall-e-3", "provider": "test",
             "inference_parameters": {"generation_type": "GenerationType.IMAGE",
                                      "extra_body": {"size": "16x16", "quality": "hd", "style": "vivid", "n": 2}}},
            {"alias": "gpt", "model": "gpt-image-1", "provider": "test",
             "inference_parameters": {"generation_type": "image"}},
            {"alias": "gemini", "model": "gemini-2.5-flash-image", "provider": "test",
             "inference_parameters": {"generation_type": "image", "extra_body": {"seed": 3}}},
            {"alias": "odd", "model": "x", "provider": "test", "inference_parameters": {"generation_type": "audio"}}],
        "columns": [
            {"name": "text", "column_type": "llm-text", "prompt": "Say hi.", "model_alias": "chat"},
            {"name": "vec", "column_type": "embedding", "target_column": "text", "model_alias": "embedder"},
            {"name": "vec2", "column_type": "embedding", "target_column": "text", "model_alias": "inferred"},
            {"name": "art", "column_type": "image", "prompt": "A picture of {{ text }}", "model_alias": "painter",
             "multi_modal_context": [{"modality": "image", "column_name": "text", "data_type": "url"}]},
            {"name": "art2", "column_type": "image", "prompt": "Another", "model_alias": "gpt"}]})
    models = {m["alias"]: m for m in result.config["models"]}
    assert models["chat"] == {"alias": "chat", "model": "test-model", "provider": "test",
                              "inference_parameters": {"max_tokens": 20}}
    assert models["embedder"] == {"alias": "embedder", "model": "test-model", "provider": "test",
                                  "generation_type": "embedding", "max_parallel_requests": 2}
    assert models["inferred"]["generation_type"] == "embedding"
    assert models["painter"] == {"alias": "painter", "model": "dall-e-3", "provider": "test",
                                 "generation_type": "image"}
    assert "odd" not in models
    columns = {c["name"]: c for c in result.config["columns"]}
    assert columns["vec"] == {"name": "vec", "column_type": "embedding", "target_column": "text",
                              "model_alias": "embedder", "dimensions": 8}
    assert columns["art"] == {"name": "art", "column_type": "image", "prompt": "A picture of {{ text }}",
                              "model_alias": "painter", "size": "16x16", "quality": "hd",
                              "extra_params": {"style": "vivid"}}
    assert columns["art2"]["response_format"] is None
    assert [str(line) for line in result.unmapped] == [
        "model_configs[6].inference_parameters.generation_type: generation_type 'audio' is not chat-completion, "
        "embedding or image",
        "columns[3].multi_modal_context: only LLM columns take multimodal context here",
        "model_configs[2].inference_parameters.encoding_format: gristmill asks for float vectors and stores them "
        "as floats",
        "model_configs[3].inference_parameters.extra_body.n: the image column sets it itself",
        "model_configs[5].inference_parameters: extra_params: set on the image columns of model 'gemini' here, and "
        "no image column uses it"]
    assert _paths(result.notes) == ["model_configs[5].model", "columns[1]", "columns[2]",
                                    "model_configs[4].inference_parameters"]
    assert "chat completions" in result.notes[0].reason
    config = gm.DatasetConfig.from_dict(result.config)
    assert [m.generation_type for m in config.models] == ["chat", "embedding", "embedding", "image", "image", "image"]


def test_converted_embedding_and_image_columns_run(server: LLMTestServer, tmp_path: Path) -> None:
    result = convert_reference_config(yaml.safe_load("""
        model_configs:
          - {alias: writer, model: test-model, provider: test}
          - alias: embedder
            model: test-model
            provider: test
            inference_parameters: {generation_type: embedding, dimensions: 8}
          - alias: painter
            model: test-model
            provider: test
            inference_parameters: {generation_type: image, extra_body: {size: 16x16}}
        columns:
          - {name: topic, column_type: sampler, sampler_type: category, params: {values: [cats, dogs]}}
          - {name: line, column_type: llm-text, model_alias: writer, prompt: "A line about {{ topic }}."}
          - {name: vec, column_type: embedding, target_column: line, model_alias: embedder}
          - {name: art, column_type: image, model_alias: painter, prompt: "A drawing of {{ topic }}"}
        """))
    assert result.unmapped == []
    provider, _ = provider_and_model(server.url)
    with gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=10, show_progress=False),
                 model_providers=[provider], model_configs=[]) as mill:
        created = mill.create(_loadable(result.config), num_records=4)
    df = created.load_dataset()
    assert all(len(vector) == 8 for vector in df["vec"])
    for row, path in enumerate(df["art"]):
        assert path == f"images/art/{row:08d}.png"
        assert (created.artifact_path / path).read_bytes().startswith(b"\x89PNG")
    assert server.stats()["embeddings"] >= 1 and server.stats()["images"] == 4


@pytest.mark.parametrize(("written", "ours"), [
    ({"distribution_type": "uniform", "params": {"low": 0.5, "high": 0.9}},
     {"distribution": "uniform", "params": {"low": 0.5, "high": 0.9}}),
    ({"distribution_type": "DistributionType.UNIFORM", "params": {"low": 0.1, "high": 0.2}},
     {"distribution": "uniform", "params": {"low": 0.1, "high": 0.2}}),
    ({"params": {"low": 0.3, "high": 0.6}}, {"distribution": "uniform", "params": {"low": 0.3, "high": 0.6}}),
    ({"distribution_type": "manual", "params": {"values": [0.2, 0.9], "weights": [1, 3]}}, None),
    ({"params": {"values": [0.5]}}, None)])
def test_temperature_and_top_p_distributions(written: dict[str, Any], ours: dict[str, Any] | None) -> None:
    result = convert_reference_config({"columns": [_llm()], "model_configs": [
        {"alias": "m", "model": "test-model", "provider": "test",
         "inference_parameters": {"temperature": written, "top_p": written}}]})
    params = result.config["models"][0]["inference_parameters"]
    where = "model_configs[0].inference_parameters"
    if ours is None:
        assert params == {}
        assert _paths(result.unmapped) == [f"{where}.temperature", f"{where}.top_p"]
        assert "'manual' distribution has no gristmill equivalent" in result.unmapped[0].reason
    else:
        assert params == {"temperature": ours, "top_p": ours}
        assert result.unmapped == []
        assert _paths(result.notes) == [f"{where}.temperature", f"{where}.top_p"]
        model = gm.DatasetConfig.from_dict(result.config).models[0]
        assert sorted(model.inference_parameters.drawn_params()) == ["temperature", "top_p"]


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
        "mcp_providers": [{"name": "docs", "command": "python"}],
        "model_providers": [{"name": "nv", "endpoint": "https://example.invalid/v1", "api_key": "NVIDIA_API_KEY"}],
    })
    assert [str(line) for line in result.unmapped] == [
        "columns[0].multi_modal_context[0]: a context without column_name names no column",
        "columns[0].made_up: no gristmill equivalent",
        "columns[1]: column 'x': column_type 'custom' is not supported",
        "columns[2].params.with_synthetic_personas: persona fields come from the reference tool's managed datasets",
        "tool_configs[0]: tool config 'search' names no providers; gristmill needs one",
        "mcp_providers: MCP servers go in tools.yaml under tool_providers, written by hand (docs/tools.md)",
    ]
    assert result.config["columns"][0] == {"name": "t", "column_type": "llm_text", "prompt": "p", "model_alias": "m",
                                           "tool_alias": "search"}
    assert result.config["columns"][1]["params"] == {"sex": "Female"}
    assert result.tool_configs == []
    assert result.providers == [{"name": "nv", "endpoint": "https://example.invalid/v1", "api_key": "$NVIDIA_API_KEY"}]
    gm.ModelProvider(**result.providers[0])
    assert not any("not supported yet" in line.reason for line in result.unmapped + result.notes)


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
    assert f"note: {name}:55: columns[8]: column 'embedding' holds one vector per row here" in result.stderr
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
