"""Nothing silently wrong: a bad argument or config is one clear ``ConfigError`` before any work,
and a preview never pays twice for the same request nor tells the user to resume."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.testing import FunctionModel, provider_and_model


def _sampler() -> dict[str, Any]:
    return {"name": "n", "column_type": "sampler", "sampler_type": "uniform",
            "params": {"low": 0, "high": 1000, "integer": True}}


def _llm_builder() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder().add_column(_sampler())
            .add_column(name="text", column_type="llm_text", prompt="Describe item {{ n }}."))


def _function_mill(path: Path, fm: FunctionModel, **run: Any) -> gm.Mill:
    return gm.Mill(path, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                   clients={fm.name: fm}, run_config=gm.RunConfig(batch_size=20, show_progress=False, **run))


# -- item 15: raw exceptions where a user expects one clear line ------------------------------------
def _create(**kwargs: Any) -> Callable[[Path], object]:
    def call(tmp_path: Path) -> object:
        with gm.Mill(tmp_path, run_config=gm.RunConfig(show_progress=False)) as mill:
            return mill.create(gm.ConfigBuilder().add_column(_sampler()), **{"num_records": 3, **kwargs})
    return call


BAD_ARGUMENTS: list[tuple[str, Callable[[Path], object], str]] = [
    ("batch_size 0", lambda p: gm.RunConfig(batch_size=0), r"batch_size: .*greater than or equal to 1"),
    ("unknown run option", lambda p: gm.RunConfig(batch_sise=10), r"batch_sise: .*not permitted"),  # type: ignore[call-arg]
    ("run_config dict, bad value", lambda p: gm.Mill(p, run_config={"batch_size": 0}), r"batch_size"),
    ("run_config of another type", lambda p: gm.Mill(p, run_config=42), r"run_config must be a RunConfig"),  # type: ignore[arg-type]
    ("artifact_path None", lambda p: gm.Mill(None), r"artifact_path must be a directory path.*NoneType"),  # type: ignore[arg-type]
    ("artifact_path int", lambda p: gm.Mill(artifact_path=123), r"artifact_path must be a directory path.*int"),  # type: ignore[arg-type]
    ("model_providers int", lambda p: gm.Mill(p, model_providers=42), r"model_providers must be"),  # type: ignore[arg-type]
    ("model_configs int", lambda p: gm.Mill(p, model_configs=3.5), r"model_configs must be"),  # type: ignore[arg-type]
    ("clients list", lambda p: gm.Mill(p, clients=[object()]), r"clients must be a mapping"),  # type: ignore[arg-type]
    ("dataset_name int", _create(dataset_name=123), r"dataset_name 123 must be a plain directory name"),
    ("num_records text", _create(num_records="10"), r"num_records must be a positive integer, got '10'"),
]


@pytest.mark.parametrize(("call", "message"), [(c, m) for _, c, m in BAD_ARGUMENTS],
                         ids=[label for label, _, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_one_config_error(tmp_path: Path, call: Callable[[Path], object], message: str) -> None:
    with pytest.raises(gm.ConfigError, match=message) as caught:
        call(tmp_path)
    assert "\n" not in str(caught.value)  # one line, not pydantic's multi-line report


def test_run_config_as_a_dict_is_accepted(tmp_path: Path) -> None:
    with gm.Mill(tmp_path, run_config={"batch_size": 3, "show_progress": False}) as mill:
        assert mill.run_config == gm.RunConfig(batch_size=3, show_progress=False)
        assert mill.create(gm.ConfigBuilder().add_column(_sampler()), num_records=7).count_records() == 7


def test_the_error_is_still_a_pydantic_validation_error_for_code_that_catches_one() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        gm.RunConfig(batch_size=0)
    assert isinstance(caught.value, gm.ConfigError)
    assert caught.value.errors()[0]["loc"] == ("batch_size",)


def test_nested_models_still_validate_and_name_their_field() -> None:
    # Converting construction errors must not change how nested models validate.
    with pytest.raises(gm.ConfigError, match=r"columns\[0\]\.params\.low"):
        gm.DatasetConfig.from_dict({"columns": [{**_sampler(), "params": {"low": "x", "high": 3}}]})
    cfg = gm.DatasetConfig.from_dict({"columns": [_sampler()]})
    assert cfg.columns[0].name == "n"


# -- item 4: a config that drops every column -------------------------------------------------------
def _dropping(*, drop_flag: bool = False, pattern: str | None = None,
              seed: pd.DataFrame | None = None) -> gm.ConfigBuilder:
    builder = gm.ConfigBuilder().add_column({**_sampler(), "drop": drop_flag})
    builder.add_column(name="msg", column_type="expression", expr="item {{ n }}", drop=drop_flag)
    if pattern is not None:
        builder.add_processor(name="dropper", processor_type="drop_columns", column_names=[pattern])
    if seed is not None:
        builder.with_seed_dataset(seed)
    return builder


SEED = pd.DataFrame({"topic": ["cats", "dogs"]})
DROPS_ALL = [
    ("every column drop=True", _dropping(drop_flag=True), r"'n', 'msg'.*drop=True"),
    ("a processor matching all", _dropping(pattern="*"), r"'n', 'msg'.*processor 'dropper'"),
    ("seed columns dropped too", _dropping(pattern="*", seed=SEED), r"'topic', 'n', 'msg'"),
    ("by flag and by name", _dropping(drop_flag=True, seed=SEED).add_processor(
        name="names", processor_type="drop_columns", column_names=["topic", "n"]),
     r"'topic' \(processor 'names'\); 'n', 'msg' \(drop=True\)"),
]


@pytest.mark.parametrize(("builder", "message"), [(b, m) for _, b, m in DROPS_ALL],
                         ids=[label for label, _, _ in DROPS_ALL])
def test_a_config_that_drops_every_column_is_refused_before_any_work(
        mill: gm.Mill, builder: gm.ConfigBuilder, message: str) -> None:
    for action in (mill.validate, lambda c: mill.preview(c, num_records=3),
                   lambda c: mill.create(c, num_records=7, dataset_name="empty")):
        with pytest.raises(gm.ConfigError, match=message) as caught:
            action(builder)
        assert "keep at least one column" in str(caught.value)
    assert not (mill.artifact_path / "empty").exists()


def test_dropping_every_generated_column_is_fine_while_seed_columns_remain(mill: gm.Mill) -> None:
    results = mill.create(_dropping(drop_flag=True, seed=SEED), num_records=4, dataset_name="kept")
    assert list(results.load_dataset().columns) == ["topic"]


def test_a_workflow_stage_that_drops_every_column_is_refused(mill: gm.Mill) -> None:
    workflow = mill.compose_workflow("wf")
    workflow.add_stage("only", _dropping(pattern="*"), num_records=5)
    with pytest.raises(gm.GristmillError, match="keep at least one column"):
        workflow.run()


# -- item 16: preview's response cache, JSON schemas, no advice to resume ---------------------------
def test_a_repeated_preview_is_answered_from_the_cache(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: f"answer to {request.prompt}")
    with _function_mill(tmp_path / "artifacts", fm) as mill:
        first = mill.preview(_llm_builder(), num_records=50)
        assert len(fm.calls) == 50
        second = mill.preview(_llm_builder(), num_records=50)
        assert len(fm.calls) == 50  # the second preview made no request
        pd.testing.assert_frame_equal(first, second)
        mill.preview(_llm_builder(), num_records=60)
        assert len(fm.calls) == 60  # only the ten new rows are paid for
    assert not (tmp_path / "artifacts").exists()  # never written where datasets live


def test_a_preview_shows_the_rows_create_would_write(tmp_path: Path) -> None:
    # The preview seed is the default dataset's derived seed, not a fresh random one: that is what
    # lets a repeated preview hit the cache, and what the user sees is what create() gives.
    fm = FunctionModel(lambda request: f"answer to {request.prompt}")
    with _function_mill(tmp_path, fm) as mill:
        shown = mill.preview(_llm_builder(), num_records=30)
        written = mill.create(_llm_builder(), num_records=30).load_dataset()
    pd.testing.assert_frame_equal(shown, written, check_dtype=False)


def test_a_preview_with_the_cache_off_asks_again(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: "ok")
    with _function_mill(tmp_path, fm, cache=False) as mill:
        mill.preview(_llm_builder(), num_records=5)
        mill.preview(_llm_builder(), num_records=5)
    assert len(fm.calls) == 10


def test_the_preview_cache_is_removed_when_the_mill_closes(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: "ok")
    with _function_mill(tmp_path, fm) as mill:
        mill.preview(_llm_builder(), num_records=2)
        cache_path = mill.services.preview_cache_path()
        assert cache_path is not None and cache_path.exists()
        assert tmp_path not in cache_path.parents
    assert not cache_path.exists()


PET = {"type": "object", "properties": {"name": {"type": "string"}, "legs": {"type": "integer"}},
       "required": ["name", "legs"]}
BAD_SCHEMAS: list[tuple[dict[str, Any], str]] = [
    ({"type": "objekt"}, r"\$\.type: unknown type 'objekt'"),
    ({"type": ["string", 3]}, r"\$\.type: unknown type 3"),
    ({"type": "object", "properties": ["name"]}, r"\$\.properties: must be a mapping"),
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, r"\$\.properties\.a\.type: unknown type 'strin'"),
    ({"type": "object", "properties": {"a": 3}}, r"\$\.properties\.a: a schema must be a mapping"),
    ({"type": "object", "properties": {"a": {}}, "required": "a"}, r"\$\.required: must be a list of property"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, r"\$\.required: 'b' is not in properties"),
    ({"type": "array", "items": "string"}, r"\$\.items: a schema must be a mapping or true/false"),
    ({"type": "array", "minItems": -1}, r"\$\.minItems: must be a non-negative integer"),
    ({"enum": []}, r"\$\.enum: must be a non-empty list"),
    ({"anyOf": {"type": "string"}}, r"\$\.anyOf: must be a non-empty list of schemas"),
    ({"type": "string", "pattern": "(unclosed"}, r"\$\.pattern: not a valid regular expression"),
    ({"$ref": "#/$defs/Missing"}, r"\$\.\$ref: '#/\$defs/Missing' names no definition"),
    ({"type": "object", "additionalProperties": "no"},
     r"\$\.additionalProperties: a schema must be a mapping or true/false"),
]


@pytest.mark.parametrize(("schema", "message"), BAD_SCHEMAS, ids=[m for _, m in BAD_SCHEMAS])
def test_a_bogus_output_schema_is_a_config_error(schema: dict[str, Any], message: str) -> None:
    builder = gm.ConfigBuilder()
    with pytest.raises(gm.ConfigError, match=r"output_format: not a valid JSON schema: " + message):
        builder.add_column(name="pet", column_type="llm_structured", prompt="A pet.", output_format=schema)


GOOD_SCHEMAS: list[dict[str, Any]] = [
    PET,
    {},
    {"type": ["string", "null"], "maxLength": 20},
    {"type": "array", "items": PET, "minItems": 1},
    {"type": "object", "properties": {"pet": {"$ref": "#/$defs/Pet"}}, "$defs": {"Pet": PET},
     "additionalProperties": False},
    {"anyOf": [{"type": "integer", "minimum": 0}, {"const": "none"}]},
    {"type": "object", "properties": {"a": True}, "required": ["a"]},
]


@pytest.mark.parametrize("schema", GOOD_SCHEMAS)
def test_usual_output_schemas_are_accepted(schema: dict[str, Any]) -> None:
    gm.ConfigBuilder().add_column(name="pet", column_type="llm_structured", prompt="A pet.", output_format=schema)


def test_a_pydantic_model_schema_is_accepted() -> None:
    from pydantic import BaseModel

    class Toy(BaseModel):
        name: str
        price: float | None = None

    class Box(BaseModel):
        toys: list[Toy]

    column = gm.ConfigBuilder().add_column(name="box", column_type="llm_structured", prompt="A box.",
                                           output_format=Box).build().columns[0]
    assert "$defs" in column.output_format  # type: ignore[attr-defined]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failing_preview_never_says_resume(tmp_path: Path) -> None:
    provider, model = provider_and_model(f"http://127.0.0.1:{_closed_port()}/v1", max_retries=0)
    cfg = gm.ConfigBuilder().add_column(name="t", column_type="llm_text", prompt="hi")
    with gm.Mill(tmp_path, model_providers=[provider], model_configs=[model],
                 run_config=gm.RunConfig(show_progress=False)) as mill, pytest.raises(gm.ModelError) as caught:
        mill.preview(cfg, num_records=3)
    assert "resum" not in str(caught.value).lower()
    assert not tmp_path.joinpath("dataset").exists()
