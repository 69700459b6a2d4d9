"""Config fingerprints: which edits change them (table-driven), and how a change is named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gristmill as gm
from gristmill.config import FINGERPRINT_VERSION
from gristmill.config.fingerprint import describe_changes

Edit = Callable[[dict[str, Any]], None]


def identity(row: dict[str, Any]) -> Any:
    return row["x"]


def base_dict() -> dict[str, Any]:
    """A config touching every fingerprinted part, as the dict a YAML file would hold."""
    return {
        "description": "base",
        "columns": [
            {"name": "x", "column_type": "sampler", "sampler_type": "uniform",
             "params": {"low": 0, "high": 10, "decimal_places": 2},
             "conditional_params": {"cat == 'a'": {"low": 1}, "cat in ['a', 'b']": {"low": 2}}},
            {"name": "cat", "column_type": "sampler", "sampler_type": "category",
             "params": {"values": ["a", "b"], "weights": [1, 3]}},
            {"name": "label", "column_type": "expression", "expr": "{{ cat }}-{{ x }}"},
            {"name": "flag", "column_type": "expression", "expr": "{{ x > 5 }}", "dtype": "bool"},
            {"name": "same", "column_type": "custom", "function": f"{__name__}:identity", "reads": ["x"],
             "version": "1"},
        ],
        "constraints": [{"constraint_type": "scalar_inequality", "target_column": "x", "operator": ">", "rhs": 1}],
        "processors": [
            {"name": "dropper", "processor_type": "drop_columns", "column_names": ["flag"]},
            {"name": "chat", "processor_type": "schema_transform", "template": {"q": "{{ label }}"}},
        ],
        "seed": {"source": "seeds/people.parquet", "sampling_strategy": "ordered"},
        "models": [{"alias": "small", "model": "model-a", "provider": "local-openai",
                    "inference_parameters": {"temperature": 0.5, "max_tokens": 100},
                    "max_parallel_requests": 4, "timeout": 30}],
    }


def column(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["columns"] if c["name"] == name)


def setter(path: str, value: Any) -> Edit:
    """An edit that sets ``a.b.c`` (a column by name when the first part starts with '@')."""

    def edit(data: dict[str, Any]) -> None:
        parts = path.split(".")
        if len(parts) == 1:
            data[path] = value
            return
        target: Any = column(data, parts[0][1:]) if parts[0].startswith("@") else data[parts[0]]
        for part in parts[1:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(parts[-1])] = value
        else:
            target[parts[-1]] = value

    return edit


def reorder_conditions(data: dict[str, Any]) -> None:
    conditions = column(data, "x")["conditional_params"]
    column(data, "x")["conditional_params"] = dict(reversed(list(conditions.items())))


def to_gaussian(data: dict[str, Any]) -> None:
    column(data, "x").update(sampler_type="gaussian", params={"mean": 5, "stddev": 1}, conditional_params={})


def reorder_columns(data: dict[str, Any]) -> None:
    data["columns"].reverse()


def reorder_processors(data: dict[str, Any]) -> None:
    data["processors"].reverse()


def add_column(data: dict[str, Any]) -> None:
    data["columns"].append({"name": "extra", "column_type": "expression", "expr": "1"})


def remove_column(data: dict[str, Any]) -> None:
    data["columns"] = [c for c in data["columns"] if c["name"] != "flag"]
    data["processors"] = [p for p in data["processors"] if p["name"] != "dropper"]


# (description, edit, changes the fingerprint, words describe_changes must use)
CASES: list[tuple[str, Edit, bool, str]] = [
    ("expression template", setter("@label.expr", "{{ cat }}/{{ x }}"), True, "expr of column 'label' changed"),
    ("expression dtype", setter("@flag.dtype", "str"), True, "dtype of column 'flag' changed"),
    ("sampler params", setter("@x.params.high", 11), True, "params of column 'x' changed"),
    ("sampler decimal places", setter("@x.params.decimal_places", 3), True, "params of column 'x' changed"),
    ("category weights", setter("@cat.params.weights", [1, 1]), True, "params of column 'cat' changed"),
    ("conditional params", setter("@x.conditional_params", {"cat == 'b'": {"low": 1}}), True,
     "conditional_params of column 'x' changed"),
    # The first matching condition wins, so their order decides the data.
    ("conditional params order", reorder_conditions, True, "conditional_params of column 'x' changed"),
    ("sampler type", to_gaussian, True, "params, sampler_type of column 'x' changed"),
    ("drop flag", setter("@label.drop", True), True, "drop of column 'label' changed"),
    ("custom version", setter("@same.version", "2"), True, "version of column 'same' changed"),
    ("custom mode", setter("@same.mode", "batch"), True, "mode of column 'same' changed"),
    ("custom reads", setter("@same.reads", ["x", "cat"]), True, "reads of column 'same' changed"),
    ("custom function", setter("@same.function", f"{__name__}:column"), True, "function of column 'same' changed"),
    ("column added", add_column, True, "column 'extra' added"),
    ("column removed", remove_column, True, "column 'flag' removed"),
    ("constraint rhs", setter("constraints.0.rhs", 2), True, "constraints changed"),
    ("constraint operator", setter("constraints.0.operator", ">="), True, "constraints changed"),
    ("drop processor", setter("processors.0.column_names", ["label"]), True, "processors changed"),
    ("schema transform", setter("processors.1.template", {"q": "{{ cat }}"}), True, "processors changed"),
    ("seed strategy", setter("seed.sampling_strategy", "shuffle"), True, "seed changed"),
    ("seed selection", setter("seed.selection_strategy", {"selection_type": "index_range", "start": 0, "end": 2}),
     True, "seed changed"),
    ("seed source path", setter("seed.source", "seeds/other.parquet"), True, "seed changed"),
    ("model name", setter("models.0.model", "model-b"), True, "models changed"),
    ("model provider", setter("models.0.provider", "other"), True, "models changed"),
    ("temperature", setter("models.0.inference_parameters.temperature", 0.9), True, "models changed"),
    ("max_tokens", setter("models.0.inference_parameters.max_tokens", 200), True, "models changed"),
    # What does not change generated data:
    ("description", setter("description", "another text"), False, ""),
    ("model timeout", setter("models.0.timeout", 999), False, ""),
    ("max_parallel_requests", setter("models.0.max_parallel_requests", 64), False, ""),
    ("max_retries", setter("models.0.max_retries", 1), False, ""),
    ("retry_backoff", setter("models.0.retry_backoff", 3.0), False, ""),
    ("max_rate_limit_wait", setter("models.0.max_rate_limit_wait", 5.0), False, ""),
    # Decision: columns are "in any order" (each one's RNG stream is keyed by its name, so values
    # do not depend on position); components are keyed by column name, so reordering keeps the
    # fingerprint. Processors are keyed by name too.
    ("column order", reorder_columns, False, ""),
    ("processor order", reorder_processors, False, ""),
]


@pytest.mark.parametrize(("what", "edit", "changes", "described"), CASES, ids=[c[0] for c in CASES])
def test_fingerprint_table(what: str, edit: Edit, changes: bool, described: str) -> None:
    before = gm.DatasetConfig.from_dict(base_dict())
    data = base_dict()
    edit(data)
    after = gm.DatasetConfig.from_dict(data)
    assert (after.fingerprint() != before.fingerprint()) is changes
    assert (after.fingerprint_components() != before.fingerprint_components()) is changes
    if changes:
        assert described in describe_changes(before.fingerprint_components(), after.fingerprint_components())


def test_fingerprint_is_a_versioned_sha256() -> None:
    cfg = gm.DatasetConfig.from_dict(base_dict())
    fingerprint = cfg.fingerprint()
    assert len(fingerprint) == 64
    int(fingerprint, 16)
    assert cfg.fingerprint_components()["version"] == FINGERPRINT_VERSION


def test_fingerprint_is_stable_across_loads(tmp_path: Path) -> None:
    cfg = gm.DatasetConfig.from_dict(base_dict())
    assert gm.DatasetConfig.from_dict(copy.deepcopy(base_dict())).fingerprint() == cfg.fingerprint()
    assert gm.DatasetConfig.from_yaml(cfg.to_yaml(tmp_path / "c.yaml")).fingerprint() == cfg.fingerprint()


def test_components_name_the_changed_field() -> None:
    before = gm.DatasetConfig.from_dict(base_dict()).fingerprint_components()
    data = base_dict()
    setter("@label.expr", "{{ x }}")(data)
    after = gm.DatasetConfig.from_dict(data).fingerprint_components()
    changed = {name: [field for field in after["columns"][name] if after["columns"][name][field]
                      != before["columns"][name][field]] for name in after["columns"]}
    assert changed == {"x": [], "cat": [], "label": ["expr"], "flag": [], "same": []}
    assert {k: v for k, v in after.items() if k != "columns"} == {k: v for k, v in before.items() if k != "columns"}


def test_describe_changes_lists_every_change() -> None:
    before = gm.DatasetConfig.from_dict(base_dict()).fingerprint_components()
    data = base_dict()
    setter("@label.expr", "{{ x }}")(data)
    setter("@x.params.low", 2)(data)
    setter("models.0.model", "model-b")(data)
    text = describe_changes(before, gm.DatasetConfig.from_dict(data).fingerprint_components())
    assert set(text.split("; ")) == {"expr of column 'label' changed", "params of column 'x' changed",
                                     "models changed"}


def test_seed_source_can_be_left_out_for_workflow_hand_offs() -> None:
    data = base_dict()
    setter("seed.source", "elsewhere/out.parquet")(data)
    a = gm.DatasetConfig.from_dict(base_dict())
    b = gm.DatasetConfig.from_dict(data)
    assert a.fingerprint(include_seed_source=False) == b.fingerprint(include_seed_source=False)
    assert a.fingerprint() != b.fingerprint()


def test_dataframe_seed_is_fingerprinted_by_content() -> None:
    pd = pytest.importorskip("pandas")

    def cfg(frame: Any) -> gm.DatasetConfig:
        return gm.ConfigBuilder().with_seed_dataset(frame).add_column(
            name="y", column_type="expression", expr="{{ a }}").build()

    same = cfg(pd.DataFrame({"a": [1, 2]})).fingerprint()
    assert cfg(pd.DataFrame({"a": [1, 2]})).fingerprint() == same
    assert cfg(pd.DataFrame({"a": [1, 3]})).fingerprint() != same


# (field, value, changes) on a ModelProvider: providers live with the Mill, not the dataset config,
# but whatever of them is fingerprinted must leave out secrets and transport.
PROVIDER_CASES = [
    ("api_key", "sk-secret", False),
    ("endpoint", "https://elsewhere.example/v1", False),
    ("extra_headers", {"Authorization": "Bearer x"}, False),
    ("extra_body", {"top_k": 5}, True),
    ("structured_output", "prompt", True),
    ("provider_type", "local", True),
]


@pytest.mark.parametrize(("field", "value", "changes"), PROVIDER_CASES, ids=[c[0] for c in PROVIDER_CASES])
def test_provider_fingerprint_payload(field: str, value: Any, changes: bool) -> None:
    base = gm.ModelProvider(name="p", endpoint="http://127.0.0.1:1/v1", api_key="$OPENAI_API_KEY")
    edited = base.model_copy(update={field: value})
    assert (edited.fingerprint_payload() != base.fingerprint_payload()) is changes
    assert "api_key" not in base.fingerprint_payload()


def test_run_config_does_not_enter_the_fingerprint(tmp_path: Path, basic_config: gm.DatasetConfig) -> None:
    fingerprints = []
    for i, run in enumerate([gm.RunConfig(batch_size=7, seed=1, show_progress=False, cache=False),
                             gm.RunConfig(batch_size=50, seed=2, show_progress=False, max_error_rate=0.1)]):
        with gm.Mill(tmp_path / f"a{i}", run_config=run) as mill:
            fingerprints.append(mill.create(basic_config, num_records=10).metadata.fingerprint)
    assert fingerprints == [basic_config.fingerprint()] * 2


def test_reordered_columns_resume_exports_consistent_csv(mill: gm.Mill, tmp_path: Path) -> None:
    data = base_dict()
    data.pop("seed")
    data.pop("models")
    first = gm.DatasetConfig.from_dict(data)
    reorder_columns(data)
    mill.create(first, num_records=50, dataset_name="d")
    results = mill.create(gm.DatasetConfig.from_dict(data), num_records=100, dataset_name="d", resume="always")
    pd = pytest.importorskip("pandas")
    exported = pd.read_csv(results.export(tmp_path / "out.csv"))
    loaded = results.load_dataset()
    assert exported["label"].tolist() == loaded["label"].tolist()
