"""LLM column configs and the four column types end to end through the Mill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import gristmill as gm
from gristmill.config.llm_columns import LLMCodeColumn, LLMJudgeColumn, LLMStructuredColumn, LLMTextColumn
from gristmill.testing import FunctionModel, LLMTestServer, provider_and_model


class Pet(BaseModel):
    name: str
    legs: int


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer() as instance:
        yield instance


def test_required_output_and_alias() -> None:
    column = LLMTextColumn(name="bio", prompt="About {{ person.name }}", system_prompt="You are {{ style }}.",
                           model_alias="writer", keep_reasoning=True)
    assert column.required_columns() == {"person", "style"}
    assert column.output_columns() == ["bio", "bio__reasoning"]
    assert column.model_aliases() == {"writer"}
    assert LLMTextColumn(name="b", prompt="x").output_columns() == ["b"]


def test_bad_template_is_a_config_error() -> None:
    with pytest.raises(gm.ConfigError):
        gm.ConfigBuilder().add_column(name="b", column_type="llm_text", prompt="{{ broken").build()


def test_structured_accepts_a_pydantic_model_and_round_trips() -> None:
    column = LLMStructuredColumn(name="pet", prompt="A pet", output_format=Pet)
    assert column.output_format["properties"]["legs"]["type"] == "integer"
    cfg = gm.ConfigBuilder().add_column(column).build()
    again = gm.DatasetConfig.from_yaml(cfg.to_yaml())
    assert again.columns[0] == column
    assert again.fingerprint() == cfg.fingerprint()


def test_judge_option_keys_are_stable_across_yaml_and_json() -> None:
    yaml_like = LLMJudgeColumn(name="j", prompt="x", scores=[{"name": "s", "description": "d", "options": {1: "a"}}])
    json_like = LLMJudgeColumn(name="j", prompt="x", scores=[{"name": "s", "description": "d", "options": {"1": "a"}}])
    assert yaml_like.fingerprint_payload() == json_like.fingerprint_payload()
    with pytest.raises(ValueError, match="unique"):
        LLMJudgeColumn(name="j", prompt="x", scores=[{"name": "s", "description": "d", "options": {"1": "a"}}] * 2)


def test_prompt_changes_change_the_fingerprint() -> None:
    def fp(**kw: object) -> str:
        return gm.ConfigBuilder().add_column(name="c", column_type="llm_code", prompt="p", **kw).build().fingerprint()

    assert fp() != fp(code_lang="sql")
    assert fp() != fp(system_prompt="s")


def test_all_four_types_through_the_mill(server: LLMTestServer, tmp_path: Path) -> None:
    server.configure(reasoning="tags")
    provider, model = provider_and_model(server.url)
    cfg = (gm.ConfigBuilder(models=[model])
           .add_column(name="topic", column_type="sampler", sampler_type="category",
                       params={"values": ["cats", "dogs"]})
           .add_column(name="essay", column_type="llm_text", prompt="Write about {{ topic }}.", keep_reasoning=True)
           .add_column(LLMCodeColumn(name="snippet", prompt="Code about {{ topic }}", code_lang="python"))
           .add_column(LLMStructuredColumn(name="pet", prompt="A pet for {{ essay }}", output_format=Pet))
           .add_column(LLMJudgeColumn(name="grade", prompt="Grade: {{ essay }}", scores=[
               {"name": "clarity", "description": "Clear?", "options": {1: "no", 2: "yes"}}]))
           .build())
    with gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=5, show_progress=False),
                 model_providers=[provider], model_configs=[]) as mill:
        df = mill.create(cfg, num_records=8).load_dataset()
    assert list(df.columns) == ["topic", "essay", "essay__reasoning", "snippet", "pet", "grade"]
    for topic, essay in zip(df["topic"], df["essay"], strict=True):
        assert essay.startswith(f"Echo: Write about {topic}.") and "<think>" not in essay
    assert df["essay__reasoning"].str.startswith("Considering request").all()
    assert df["snippet"].str.startswith("# snippet").all()
    assert all(isinstance(p["name"], str) and isinstance(p["legs"], int) for p in df["pet"])
    assert all(g["clarity"]["score"] in (1, 2) and isinstance(g["clarity"]["reasoning"], str) for g in df["grade"])


def test_preview_runs_llm_columns(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: f"Echo: {request.prompt}")
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="Hello").build()
    with gm.Mill(tmp_path, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                 clients={fm.name: fm}) as mill:
        df = mill.preview(cfg, num_records=3)
    assert df["t"].tolist() == ["Echo: Hello"] * 3
    assert len(fm.calls) == 3
    assert not (tmp_path / "dataset").exists()  # a preview writes nothing
