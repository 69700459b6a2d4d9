"""Column dependency graph: generation order, missing references, cycles, seed clashes."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.engine.graph import generation_order


def expr(name: str, template: str) -> dict[str, Any]:
    return {"name": name, "column_type": "expression", "expr": template}


def custom(name: str, reads: list[str], writes: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "column_type": "custom", "function": "json:dumps", "reads": reads, "writes": writes or []}


def build(*columns: dict[str, Any], seed: pd.DataFrame | None = None) -> gm.DatasetConfig:
    builder = gm.ConfigBuilder()
    if seed is not None:
        builder.with_seed_dataset(seed)
    for spec in columns:
        builder.add_column(**spec)
    return builder.build()


def order(*columns: dict[str, Any], available: tuple[str, ...] = ()) -> list[str]:
    return [c.name for c in generation_order(build(*columns).columns, available=available)]


def test_each_column_comes_after_what_it_reads() -> None:
    names = order(expr("d", "{{ c }}{{ a }}"), expr("c", "{{ b }}"), expr("b", "{{ a.x }}"), expr("a", "1"),
                  custom("e", reads=["d", "b"]))
    position = {name: i for i, name in enumerate(names)}
    assert sorted(names) == ["a", "b", "c", "d", "e"]
    for reader, read in [("b", "a"), ("c", "b"), ("d", "c"), ("d", "a"), ("e", "d"), ("e", "b")]:
        assert position[read] < position[reader]


def test_independent_columns_keep_config_order() -> None:
    assert order(expr("z", "1"), expr("y", "2"), expr("x", "3")) == ["z", "y", "x"]


def test_a_multi_output_column_is_ordered_before_readers_of_any_output() -> None:
    names = order(expr("reader", "{{ second }}"), custom("maker", reads=[], writes=["first", "second"]))
    assert names == ["maker", "reader"]


def test_seed_columns_are_available_without_producer() -> None:
    assert order(expr("b", "{{ from_seed }}"), available=("from_seed",)) == ["b"]


def test_missing_reference_names_the_column_and_the_reference(mill: gm.Mill) -> None:
    cfg = build(expr("a", "1"), expr("b", "{{ a }} {{ typo_col }}"))
    with pytest.raises(gm.ConfigError) as info:
        mill.validate(cfg)
    message = str(info.value)
    assert "'b'" in message
    assert "'typo_col'" in message
    assert "known: a, b" in message


def test_missing_reference_in_custom_reads_is_named(mill: gm.Mill) -> None:
    with pytest.raises(gm.ConfigError, match="column 'c' references 'nope'"):
        mill.validate(build(custom("c", reads=["nope"])))


def test_cycle_names_exactly_the_columns_in_it(mill: gm.Mill) -> None:
    cfg = build(expr("root", "1"), expr("a", "{{ c }}"), expr("b", "{{ a }}{{ root }}"), expr("c", "{{ b }}"),
                expr("downstream", "{{ a }}"))
    with pytest.raises(gm.ConfigError, match="cycle") as info:
        mill.validate(cfg)
    named = set(re.findall(r"'(\w+)'", str(info.value)))
    assert named == {"a", "b", "c"}


def test_two_column_cycle_through_custom_reads(mill: gm.Mill) -> None:
    cfg = build(custom("p", reads=["q"]), expr("q", "{{ p }}"))
    with pytest.raises(gm.ConfigError, match=r"'p', 'q' form a dependency cycle"):
        mill.validate(cfg)


@pytest.mark.parametrize(("columns", "words"), [
    ([expr("a", "{{ a }}")], "column 'a' references itself"),
    ([custom("a", reads=["a"])], "column 'a' references itself"),
    ([custom("a", reads=["b"], writes=["a", "b"])], "column 'a' references 'b', which it writes itself"),
])
def test_self_reference_is_a_config_error(mill: gm.Mill, columns: list[dict[str, Any]], words: str) -> None:
    with pytest.raises(gm.ConfigError, match=re.escape(words)):
        mill.validate(build(*columns))


@pytest.mark.parametrize("column", [expr("name", "x"), custom("c", reads=[], writes=["other", "name"])])
def test_seed_column_clash_is_a_config_error(mill: gm.Mill, column: dict[str, Any]) -> None:
    cfg = build(column, seed=pd.DataFrame({"name": ["a"], "age": [3]}))
    with pytest.raises(gm.ConfigError, match="'name' is both a seed column and a generated column"):
        mill.validate(cfg)


def test_sampler_reading_a_later_column_type_is_refused(mill: gm.Mill) -> None:
    cfg = build(expr("parent", "books"),
                {"name": "sub", "column_type": "sampler", "sampler_type": "subcategory",
                 "params": {"category": "parent", "values": {"books": ["a"]}}})
    with pytest.raises(gm.ConfigError, match="sampler column 'sub' depends on \\['parent'\\]"):
        mill.validate(cfg)


def test_graph_errors_write_nothing(mill: gm.Mill) -> None:
    with pytest.raises(gm.ConfigError):
        mill.create(build(expr("a", "{{ b }}"), expr("b", "{{ a }}")), num_records=5, dataset_name="never")
    assert not (mill.artifact_path / "never").exists()


def test_generation_follows_the_graph(mill: gm.Mill) -> None:
    cfg = build(expr("full", "{{ greeting }}, {{ who }}!"), expr("greeting", "Hello"), expr("who", "{{ seed_name }}"),
                seed=pd.DataFrame({"seed_name": ["Ann", "Bo"]}))
    assert mill.preview(cfg, num_records=3)["full"].tolist() == ["Hello, Ann!", "Hello, Bo!", "Hello, Ann!"]
