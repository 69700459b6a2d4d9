"""DatasetConfig and ConfigBuilder: building, YAML/JSON round trips, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import gristmill as gm
from gristmill.config import column_types

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "products.yaml"


def uniform(name: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "column_type": "sampler", "sampler_type": "uniform",
            "params": {"low": 0, "high": 1, **params}}


def double(row: dict[str, Any]) -> float:
    return row["x"] * 2


def full_config() -> gm.DatasetConfig:
    """Every built-in column type, a constraint, both processors and a model."""
    return (gm.ConfigBuilder(models=[gm.ModelConfig(alias="small", model="gpt-x", provider="p")])
            .add_column(**uniform("x", decimal_places=2))
            .add_column(name="cat", column_type="sampler", sampler_type="category",
                        params={"values": ["a", "b"], "weights": [1, 3]},
                        conditional_params={})
            .add_column(name="label", column_type="expression", expr="{{ cat }}-{{ x }}")
            .add_column(name="flag", column_type="expression", expr="{{ x > 0.5 }}", dtype="bool", drop=True)
            .add_column(name="twice", column_type="custom", function=f"{__name__}:double", reads=["x"], version="2")
            .add_constraint(constraint_type="scalar_inequality", target_column="x", operator=">", rhs=0.1)
            .add_processor(name="drop_label", processor_type="drop_columns", column_names=["lab*"])
            .add_processor(name="chat", processor_type="schema_transform", template={"q": "{{ label }}"})
            .with_description("all kinds")
            .build())


# ------------------------------------------------------------------------------------------- building

def test_builder_accepts_keyword_arguments_and_column_objects_alike() -> None:
    from_kwargs = (gm.ConfigBuilder()
                   .add_column(**uniform("x"))
                   .add_column(name="y", column_type="expression", expr="{{ x }}", dtype="float")
                   .build())
    from_objects = (gm.ConfigBuilder()
                    .add_column(gm.SamplerColumn(name="x", sampler_type="uniform", params={"low": 0, "high": 1}))
                    .add_column(gm.ExpressionColumn(name="y", expr="{{ x }}", dtype="float"))
                    .build())
    assert from_kwargs == from_objects
    assert from_kwargs.fingerprint() == from_objects.fingerprint()
    assert [type(c) for c in from_kwargs.columns] == [gm.SamplerColumn, gm.ExpressionColumn]


def test_builder_refuses_a_column_object_and_keywords_together() -> None:
    with pytest.raises(gm.ConfigError, match="not both"):
        gm.ConfigBuilder().add_column(gm.ExpressionColumn(name="y", expr="1"), name="z")


def test_build_returns_a_new_config_each_time() -> None:
    builder = gm.ConfigBuilder().add_column(**uniform("x"))
    first = builder.build()
    second = builder.add_column(name="y", column_type="expression", expr="{{ x }}").build()
    assert [c.name for c in first.columns] == ["x"]
    assert [c.name for c in second.columns] == ["x", "y"]


def test_with_seed_dataset_sets_strategies(tmp_path: Path) -> None:
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(tmp_path / "seed.parquet", sampling_strategy="shuffle",
                              selection_strategy=gm.IndexRange(start=0, end=5))
           .add_column(name="y", column_type="expression", expr="1")
           .build())
    assert cfg.seed is not None
    assert cfg.seed.source == str(tmp_path / "seed.parquet")
    assert cfg.seed.sampling_strategy is gm.SamplingStrategy.SHUFFLE
    assert cfg.seed.selection_strategy == gm.IndexRange(start=0, end=5)


def test_to_config_builder_round_trip_keeps_the_config() -> None:
    cfg = full_config()
    assert gm.ConfigBuilder.from_config(cfg).build() == cfg


def test_builtin_column_types_are_registered() -> None:
    assert {"sampler", "expression", "custom"} <= set(column_types())


# ------------------------------------------------------------------------------------------- round trips

def test_yaml_round_trip_is_equal_and_keeps_the_fingerprint(tmp_path: Path) -> None:
    cfg = full_config()
    path = tmp_path / "cfg.yaml"
    text = cfg.to_yaml(path)
    assert path.read_text(encoding="utf-8") == text
    for loaded in (gm.DatasetConfig.from_yaml(path), gm.DatasetConfig.from_yaml(text)):
        assert loaded == cfg
        assert loaded.fingerprint() == cfg.fingerprint()
        assert loaded.to_yaml() == text


def test_json_round_trip_is_equal_and_keeps_the_fingerprint(tmp_path: Path) -> None:
    cfg = full_config()
    path = tmp_path / "cfg.json"
    text = cfg.to_json(path)
    assert json.loads(path.read_text(encoding="utf-8")) == cfg.to_dict()
    for loaded in (gm.DatasetConfig.from_json(path), gm.DatasetConfig.from_json(text)):
        assert loaded == cfg
        assert loaded.fingerprint() == cfg.fingerprint()


def test_example_config_round_trips() -> None:
    cfg = gm.DatasetConfig.from_yaml(EXAMPLE)
    again = gm.DatasetConfig.from_yaml(cfg.to_yaml())
    assert again == cfg
    assert again.fingerprint() == cfg.fingerprint()


def test_custom_column_given_as_a_callable_serialises_as_module_qualname() -> None:
    cfg = gm.ConfigBuilder().add_column(**uniform("x")).add_column(
        name="twice", column_type="custom", function=double, reads=["x"]).build()
    data = cfg.to_dict()
    assert data["columns"][1]["function"] == f"{__name__}:double"
    loaded = gm.DatasetConfig.from_json(cfg.to_json())
    assert loaded.columns[1].function == f"{__name__}:double"
    assert loaded.columns[1].resolve() is double
    assert loaded.fingerprint() == cfg.fingerprint()


def test_dataframe_seed_cannot_be_written_to_yaml() -> None:
    pd = pytest.importorskip("pandas")
    cfg = gm.ConfigBuilder().with_seed_dataset(pd.DataFrame({"a": [1]})).add_column(
        name="y", column_type="expression", expr="{{ a }}").build()
    with pytest.raises(gm.ConfigError, match="DataFrame seed"):
        cfg.to_yaml()


# ------------------------------------------------------------------------------------------- bad input

def config_error(data: Any) -> str:
    with pytest.raises(gm.ConfigError) as info:
        gm.DatasetConfig.from_dict(data)
    return str(info.value)


def test_bad_sampler_param_names_the_dotted_field_path() -> None:
    message = config_error({"columns": [uniform("a"), uniform("b", low="lots")]})
    assert "columns[1].params.low" in message


@pytest.mark.parametrize(("params", "words"), [
    ({"low": "lots"}, ["columns[1]", "'b'", "params", "low", "valid number"]),
    ({"low": 5, "high": 1}, ["columns[1]", "'b'", "low (5.0) must not exceed high (1.0)"]),
    ({"lo": 3}, ["columns[1]", "'b'", "lo", "Extra inputs are not permitted"]),
])
def test_bad_sampler_params_name_the_column_and_field(params: dict[str, Any], words: list[str]) -> None:
    message = config_error({"columns": [uniform("a"), uniform("b", **params)]})
    for word in words:
        assert word in message


@pytest.mark.parametrize(("sampler_type", "params", "words"), [
    ("category", {"values": ["a", "b"], "weights": [1]}, ["weights has 1 entries but values has 2"]),
    ("binomial", {"n": -1, "p": 0.5}, ["n:", "greater than or equal to 0"]),
    ("bernoulli", {"p": 1.5}, ["p:", "less than or equal to 1"]),
    ("uniform", {"low": 0}, ["high:", "Field required"]),
])
def test_out_of_range_sampler_params(sampler_type: str, params: dict[str, Any], words: list[str]) -> None:
    message = config_error({"columns": [{"name": "c", "column_type": "sampler", "sampler_type": sampler_type,
                                         "params": params}]})
    assert "columns[0]" in message
    assert "'c'" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(("data", "words"), [
    ({"columns": [{"name": "a", "column_type": "nope"}]}, ["'a'", "unknown column_type 'nope'", "expression"]),
    ({"columns": [{"name": "a", "column_type": "sampler", "sampler_type": "nope", "params": {}}]},
     ["columns[0]", "unknown sampler_type 'nope'", "uniform"]),
    ({"columns": [{"name": "a"}]}, ["'a'", "'column_type' is required"]),
    ({"columns": [], "colums": []}, ["colums", "Extra inputs are not permitted"]),
    ({"columns": [{"name": "a", "column_type": "expression", "expr": "1", "exp": "2"}]},
     ["columns[0].exp", "Extra inputs are not permitted"]),
    ({"columns": [{"name": "1a", "column_type": "expression", "expr": "1"}]}, ["columns[0].name", "identifier"]),
    ({"columns": [{"name": "none", "column_type": "expression", "expr": "1"}]}, ["columns[0].name", "reserved"]),
    ({"columns": [{"name": "range", "column_type": "expression", "expr": "1"}]}, ["columns[0].name", "reserved"]),
    ({"columns": [{"name": "a", "column_type": "expression", "expr": "1", "dtype": "decimal"}]},
     ["columns[0].dtype"]),
    ({"columns": [{"name": "a", "column_type": "expression", "expr": "{{ x "}]}, ["columns[0].expr", "'a'"]),
    ({"columns": [{"name": "a", "column_type": "expression", "expr": "{{ x | no_such_filter }}"}]},
     ["columns[0].expr", "no_such_filter"]),
    ({"columns": [uniform("a")], "constraints": [
        {"constraint_type": "scalar_inequality", "target_column": "a", "operator": "<<", "rhs": 1}]},
     ["constraints[0]", "operator"]),
    ({"columns": [uniform("a")], "processors": [{"name": "p", "processor_type": "nope"}]},
     ["processors[0]", "nope"]),
    ({"columns": [{"name": "a", "column_type": "custom", "function": "no_colon"}]},
     ["columns[0].function", "module:qualname"]),
    (["not", "a", "mapping"], ["mapping"]),
])
def test_config_errors_name_the_field(data: Any, words: list[str]) -> None:
    message = config_error(data)
    for word in words:
        assert word in message, message


def test_builder_errors_name_the_column() -> None:
    builder = gm.ConfigBuilder().add_column(**uniform("a"))
    with pytest.raises(gm.ConfigError) as info:
        builder.add_column(name="b", column_type="sampler", sampler_type="uniform", params={"low": 2, "high": 1})
    assert "'b'" in str(info.value)
    assert "columns[1]" in str(info.value)
    assert "low (2.0) must not exceed high (1.0)" in str(info.value)
    with pytest.raises(gm.ConfigError, match="unknown sampler_type 'gauss'"):
        builder.add_column(name="c", column_type="sampler", sampler_type="gauss", params={})


@pytest.mark.parametrize("second", [
    {"name": "a", "column_type": "expression", "expr": "1"},
    {"name": "c", "column_type": "custom", "function": "json:dumps", "writes": ["a", "d"]},
])
def test_duplicate_column_names_are_refused(second: dict[str, Any]) -> None:
    message = config_error({"columns": [uniform("a"), second]})
    assert "duplicate column name 'a'" in message


def test_duplicate_processor_names_are_refused() -> None:
    message = config_error({"columns": [uniform("a")], "processors": [
        {"name": "p", "processor_type": "drop_columns", "column_names": ["a"]},
        {"name": "p", "processor_type": "schema_transform", "template": {"x": "{{ a }}"}}]})
    assert "duplicate processor name(s) 'p'" in message


def test_yaml_that_does_not_parse_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("columns: [\n  - oops", encoding="utf-8")
    with pytest.raises(gm.ConfigError, match="broken.yaml"):
        gm.DatasetConfig.from_yaml(path)


def test_missing_config_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(gm.ConfigError, match="nowhere.yaml"):
        gm.DatasetConfig.from_yaml(tmp_path / "nowhere.yaml")


def test_field_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"columns": [uniform("a", high="x")]}), encoding="utf-8")
    with pytest.raises(gm.ConfigError) as info:
        gm.DatasetConfig.from_yaml(path)
    assert "columns[0]" in str(info.value)
    assert "high" in str(info.value)


# ------------------------------------------------------------------------------------------- custom columns

def test_custom_column_by_module_qualname_resolves_nested_names() -> None:
    gm.allow_modules("json")
    column = gm.CustomColumn(name="d", function="json:JSONEncoder.encode")
    import json as json_module

    assert column.resolve() is json_module.JSONEncoder.encode
    assert column.function_ref() == "json:JSONEncoder.encode"


@pytest.mark.parametrize("ref", ["no_such_module_xyz:f", "json:no_such_function"])
def test_custom_column_that_cannot_be_imported_is_a_config_error(ref: str, mill: gm.Mill) -> None:
    gm.allow_modules(ref.partition(":")[0])  # allowed, so what fails is the import itself
    cfg = gm.ConfigBuilder().add_column(name="d", column_type="custom", function=ref).build()
    with pytest.raises(gm.ConfigError, match=f"column 'd': cannot import function '{ref}'"):
        mill.preview(cfg, num_records=1)


def test_custom_function_must_be_callable() -> None:
    with pytest.raises(gm.ConfigError, match="callable"):
        gm.ConfigBuilder().add_column(name="d", column_type="custom", function=42)


# ------------------------------------------------------------------------------------------- JSON schema

SAMPLE_YAML = """\
columns:
  - {name: topic, column_type: sampler, sampler_type: category, params: {values: [math, art], weights: [1, 2]},
     conditional_params: {}}
  - {name: price, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 9, decimal_places: 2}}
  - {name: who, column_type: sampler, sampler_type: person, params: {locale: en_GB}}
  - {name: label, column_type: expression, expr: "{{ topic }}", dtype: str}
  - {name: twice, column_type: custom, function: "tests.test_config:double", reads: [price]}
  - {name: question, column_type: llm_text, prompt: "Ask about {{ topic }}", model_alias: small}
  - name: verdict
    column_type: llm_judge
    prompt: "{{ question }}"
    scores: [{name: clarity, description: "Is it clear?", options: {"1": bad, "2": good}}]
constraints:
  - {constraint_type: scalar_inequality, target_column: price, operator: ">", rhs: 2}
processors:
  - {name: chat, processor_type: schema_transform, template: {q: "{{ question }}"}}
  - {name: hide, processor_type: drop_columns, column_names: [label]}
seed: {source: rows.parquet, sampling_strategy: shuffle}
"""


def schema_problems(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> list[str]:
    """A small JSON-schema check (the keywords our schema uses), for when ``jsonschema`` is absent."""
    if "$ref" in schema:
        return schema_problems(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, where)
    if "discriminator" in schema:
        ref = schema["discriminator"]["mapping"].get(value.get(schema["discriminator"]["propertyName"]))
        return schema_problems(value, {"$ref": ref}, root, where) if ref else [f"{where}: unknown type"]
    if "anyOf" in schema or "oneOf" in schema:
        branches = [schema_problems(value, s, root, where) for s in schema.get("anyOf", schema.get("oneOf"))]
        return [] if any(not b for b in branches) else [f"{where}: matches no branch: {branches}"]
    problems = _type_problems(value, schema, where)
    for rule in schema.get("allOf", []):
        if not schema_problems(value, rule["if"], root, where):
            problems += schema_problems(value, rule["then"], root, where)
    if isinstance(value, dict):
        problems += _object_problems(value, schema, root, where)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += schema_problems(item, schema["items"], root, f"{where}[{i}]")
    return problems


def _type_problems(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float),
             "null": type(None)}
    if "type" in schema and not isinstance(value, types[schema["type"]]):
        return [f"{where}: not a {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: not one of {schema['enum']}"]
    return []


def _object_problems(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    properties = schema.get("properties", {})
    problems = [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
    for key, item in value.items():
        if key in properties:
            problems += schema_problems(item, properties[key], root, f"{where}.{key}")
        elif schema.get("additionalProperties") is False:
            problems.append(f"{where}: unexpected {key!r}")
    return problems


def validate_against(data: Any, schema: dict[str, Any]) -> list[str]:
    try:
        import jsonschema
    except ImportError:
        return schema_problems(data, schema, schema)
    return [error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(data)]


def test_json_schema_lists_every_builtin_type() -> None:
    from gristmill.config.processors import processor_types
    from gristmill.config.schema import dataset_config_json_schema

    schema = dataset_config_json_schema()
    json.dumps(schema)  # plain JSON
    columns = schema["properties"]["columns"]["items"]
    assert columns["discriminator"]["propertyName"] == "column_type"
    assert set(columns["discriminator"]["mapping"]) == set(column_types()) >= {
        "sampler", "expression", "custom", "llm_text", "llm_code", "llm_structured", "llm_judge"}
    processors = schema["properties"]["processors"]["items"]["discriminator"]["mapping"]
    assert set(processors) == set(processor_types()) == {"drop_columns", "schema_transform"}


def test_a_sample_yaml_config_validates_against_the_schema() -> None:
    from gristmill.config.schema import dataset_config_json_schema

    schema = dataset_config_json_schema()
    data = yaml.safe_load(SAMPLE_YAML)
    assert validate_against(data, schema) == []
    gm.DatasetConfig.from_dict(data)  # and the config itself agrees


@pytest.mark.parametrize(("change", "word"), [
    (lambda d: d["columns"][1]["params"].update(lo=1), "lo"),
    (lambda d: d["columns"][0].pop("column_type"), "type"),
    (lambda d: d["columns"][3].update(dtype="decimal"), "dtype"),
    (lambda d: d["processors"][0].update(processor_type="nope"), "type"),
    (lambda d: d["columns"][1].update(sampler_type="nope"), "sampler_type"),
])
def test_the_schema_rejects_what_the_config_rejects(change: Any, word: str) -> None:
    from gristmill.config.schema import dataset_config_json_schema

    data = yaml.safe_load(SAMPLE_YAML)
    change(data)
    problems = validate_against(data, dataset_config_json_schema())
    assert problems and word in " ".join(problems), problems


# ------------------------------------------------------------------------------------------- code_lang

def _code_column(code_lang: str) -> gm.LLMCodeColumn:
    return gm.LLMCodeColumn(name="c", prompt="p", code_lang=code_lang)


@pytest.mark.parametrize(("code_lang", "fence", "dialect"), [
    ("python", "python", None), ("sql", "sql", None), ("sql:ansi", "sql", "ansi"),
    ("sql:postgres", "sql", "postgres"), ("sql:duckdb", "sql", "duckdb"), ("SQL:BigQuery", "sql", "bigquery"),
    ("TypeScript", "typescript", None),
])
def test_code_lang_gives_the_fence_and_the_dialect(code_lang: str, fence: str, dialect: str | None) -> None:
    column = _code_column(code_lang)
    assert (column.code_fence, column.sql_dialect) == (fence, dialect)


@pytest.mark.parametrize(("code_lang", "message"), [
    ("brainfudge", "known languages: bash, c, "), ("sql:oracle9", "only sql takes a dialect"),
    ("python:3", "only sql takes a dialect"), ("", "unknown code_lang"),
])
def test_unknown_code_lang_is_a_config_error_listing_the_known(code_lang: str, message: str) -> None:
    with pytest.raises(gm.ConfigError, match=message) as caught:
        _code_column(code_lang)
    assert "sql:postgres" in str(caught.value)


def test_code_lang_fingerprint_changes_only_where_the_meaning_did() -> None:
    def fingerprint(code_lang: str) -> str:
        return (gm.ConfigBuilder().add_column(name="c", column_type="llm_code", prompt="p", code_lang=code_lang)
                .build().fingerprint())

    # Digests of the version that used code_lang itself as the fence tag.
    assert fingerprint("python") == "02ca1389b09084f8247e463e82cb54ceb582e83139ecd94a6a3636d6dbcfe9a5"
    assert fingerprint("sql") == "20c0fdacc188a397443b09ad39745f738be493510096ed524448f25610413c64"
    # 'sql:ansi' was asked for as a '```sql:ansi' block; now as '```sql': not the same data.
    assert fingerprint("sql:ansi") != "74df1fde836cb0c6e63d3d1fe841288e8bfe49b4783012cfd962118468ae6d47"
    assert len({fingerprint("sql:ansi"), fingerprint("sql:postgres"), fingerprint("sql")}) == 3
