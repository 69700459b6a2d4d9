"""Processors: drop_columns (names, globs, drop=True) and schema_transform, on real parquet files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import gristmill as gm


def expr(name: str, template: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "column_type": "expression", "expr": template, **extra}


def builder() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="x", column_type="sampler", sampler_type="uniform",
                        params={"low": 0, "high": 100, "integer": True})
            .add_column(**expr("tmp_a", "a{{ x }}"))
            .add_column(**expr("tmp_b", "b{{ x }}"))
            .add_column(**expr("hidden", "h{{ x }}", drop=True))
            .add_column(**expr("scratch", "s{{ x }}"))
            .add_column(**expr("keep", "{{ tmp_a }}|{{ hidden }}")))


def rows_per_file(directory: Path) -> list[int]:
    return [pq.ParquetFile(p).metadata.num_rows for p in sorted(directory.glob("batch_*.parquet"))]


def read_dir(directory: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(directory.glob("batch_*.parquet"))], ignore_index=True)


def test_drop_columns_by_name_and_glob_keeps_the_dropped_data(mill: gm.Mill) -> None:
    cfg = builder().add_processor(name="dropper", processor_type="drop_columns",
                                  column_names=["tmp_*", "scratch"]).build()
    results = mill.create(cfg, num_records=120)
    root = results.artifact_path
    main = results.load_dataset()
    dropped = read_dir(root / "dropped-columns")
    assert list(main.columns) == ["x", "keep"]
    assert sorted(dropped.columns) == ["hidden", "scratch", "tmp_a", "tmp_b"]
    assert rows_per_file(root / "dropped-columns") == rows_per_file(root / "parquet-files") == [50, 50, 20]
    assert dropped["tmp_a"].tolist() == [f"a{x}" for x in main["x"]]
    assert dropped["scratch"].tolist() == [f"s{x}" for x in main["x"]]
    assert main["keep"].tolist() == [f"a{x}|h{x}" for x in main["x"]]
    assert results.metadata.column_names == ["x", "keep"]
    assert all(b.dropped_file is not None and b.dropped_file.rows == b.rows for b in results.metadata.completed_batches)


def test_drop_flag_alone_moves_the_column_aside(mill: gm.Mill) -> None:
    results = mill.create(builder().build(), num_records=60)
    assert "hidden" not in results.load_dataset().columns
    dropped = read_dir(results.artifact_path / "dropped-columns")
    assert list(dropped.columns) == ["hidden"]
    assert len(dropped) == 60


def test_without_drops_there_is_no_dropped_directory(mill: gm.Mill, basic_config: gm.DatasetConfig) -> None:
    results = mill.create(basic_config, num_records=10)
    assert not (results.artifact_path / "dropped-columns").exists()
    assert all(b.dropped_file is None for b in results.metadata.completed_batches)


def test_preview_shows_dropped_columns_but_writes_nothing(mill: gm.Mill) -> None:
    cfg = builder().add_processor(name="dropper", processor_type="drop_columns", column_names=["tmp_*"]).build()
    frame = mill.preview(cfg, num_records=5)
    assert {"x", "keep", "hidden", "tmp_a", "tmp_b"} <= set(frame.columns)
    assert not mill.artifact_path.exists()


TEMPLATE = {
    "messages": [{"role": "user", "content": "value {{ x }}"}, {"role": "assistant", "content": "{{ keep }}"}],
    "meta": {"source": "{{ tmp_b }}", "fixed": "constant"},
    "pair": "{{ [x, x + 1] | tojson }}",
}


def test_schema_transform_writes_json_shaped_rows_under_processors_files(mill: gm.Mill) -> None:
    cfg = (builder()
           .add_processor(name="chat", processor_type="schema_transform", template=TEMPLATE)
           .add_processor(name="dropper", processor_type="drop_columns", column_names=["tmp_*"])
           .build())
    results = mill.create(cfg, num_records=120)
    directory = results.artifact_path / "processors-files" / "chat"
    assert rows_per_file(directory) == [50, 50, 20]
    out = results.load_processor_output("chat")
    main = results.load_dataset()
    assert len(out) == len(main) == 120
    first = json.loads(out.iloc[:1].to_json(orient="records"))[0]
    x = int(main["x"].iloc[0])
    assert first == {
        "messages": [{"role": "user", "content": f"value {x}"}, {"role": "assistant", "content": f"a{x}|h{x}"}],
        "meta": {"source": f"b{x}", "fixed": "constant"},
        "pair": [x, x + 1],
    }
    assert all(set(b.processor_files) == {"chat"} for b in results.metadata.completed_batches)
    assert all(b.processor_files["chat"].rows == b.rows for b in results.metadata.completed_batches)


def test_tojson_leaves_keep_their_structure(mill: gm.Mill) -> None:
    cfg = builder().add_processor(name="chat", processor_type="schema_transform", template=TEMPLATE).build()
    results = mill.create(cfg, num_records=30)
    records = results.load_processor_output("chat")
    assert records["pair"].map(len).eq(2).all()


@pytest.mark.parametrize(("processor", "words"), [
    ({"name": "p", "processor_type": "drop_columns", "column_names": ["typo_col"]}, ["'p'", "typo_col"]),
    ({"name": "st", "processor_type": "schema_transform", "template": {"a": {"b": ["{{ nope }}"]}}},
     ["'st'", "nope"]),
])
def test_processor_referencing_a_missing_column_is_a_config_error(mill: gm.Mill, processor: dict[str, Any],
                                                                   words: list[str]) -> None:
    cfg = builder().add_processor(**processor).build()
    with pytest.raises(gm.ConfigError) as info:
        mill.validate(cfg)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(gm.ConfigError):
        mill.create(cfg, num_records=10, dataset_name="bad")
    assert not (mill.artifact_path / "bad").exists()


def test_drop_glob_matching_nothing_fails_before_anything_is_written(mill: gm.Mill) -> None:
    cfg = builder().add_processor(name="p", processor_type="drop_columns", column_names=["nothing_*"]).build()
    with pytest.raises(gm.ConfigError, match="'nothing_\\*' matches no column"):
        mill.create(cfg, num_records=10, dataset_name="bad")
    assert not (mill.artifact_path / "bad").exists()


def test_drop_glob_matching_nothing_is_a_config_error_at_create(mill: gm.Mill) -> None:
    cfg = builder().add_processor(name="p", processor_type="drop_columns", column_names=["nothing_*"]).build()
    with pytest.raises(gm.ConfigError, match="processor 'p': 'nothing_\\*' matches no column"):
        mill.create(cfg, num_records=10, dataset_name="bad")


def test_processor_may_drop_seed_columns(mill: gm.Mill) -> None:
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(pd.DataFrame({"secret": ["s1", "s2"], "public": ["p1", "p2"]}))
           .add_column(**expr("combined", "{{ public }}/{{ secret }}"))
           .add_processor(name="hide", processor_type="drop_columns", column_names=["secret"])
           .build())
    results = mill.create(cfg, num_records=4)
    assert results.load_dataset().to_dict("list") == {"public": ["p1", "p2"] * 2,
                                                      "combined": ["p1/s1", "p2/s2"] * 2}
    assert read_dir(results.artifact_path / "dropped-columns")["secret"].tolist() == ["s1", "s2"] * 2


def test_invalid_processor_names_are_refused() -> None:
    with pytest.raises(gm.ConfigError, match="processor name"):
        builder().add_processor(name="../escape", processor_type="drop_columns", column_names=["x"]).build()


def seeded(texts: list[str], template: dict[str, Any]) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .with_seed_dataset(pd.DataFrame({"t": texts}))
            .add_column(**expr("copy", "{{ t }}"))
            .add_processor(name="st", processor_type="schema_transform", template=template)
            .build())


def test_text_that_looks_like_json_stays_text(mill: gm.Mill) -> None:
    # Only a '{{ ... | tojson }}' leaf keeps JSON structure; otherwise one row's '[note] ...' and
    # another's '[1, 2]' would give one key two types.
    texts = ["[1, 2]", "hello", '{"a": 1}', "[note] x"]
    results = mill.create(seeded(texts, {"q": "{{ t }}", "n": 3, "both": "{{ [copy, t] | tojson }}"}),
                          num_records=4)
    out = results.load_processor_output("st")
    assert out["q"].tolist() == texts
    assert out["n"].tolist() == [3] * 4
    assert [list(v) for v in out["both"]] == [[t, t] for t in texts]


def test_schema_transform_errors_name_the_processor(mill: gm.Mill) -> None:
    with pytest.raises(gm.GenerationError, match="processor 'st', key 'bad'.*ZeroDivisionError"):
        mill.create(seeded(["a"], {"bad": "{{ 1 // 0 }}"}), num_records=1, dataset_name="zero")
    mixed = seeded(["[1, 2]", "plain"], {"k": "{{ (t | list if t.startswith('[') else t) | tojson }}"})
    with pytest.raises(gm.GenerationError, match="processor 'st': its rows do not fit one table"):
        mill.create(mixed, num_records=2, dataset_name="mixed")
