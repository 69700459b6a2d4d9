"""Seed datasets: every source kind, ORDERED/SHUFFLE with cycling, selections, and bad sources."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.engine.seeds import SeedReader, load_seed_table

ROWS = 10
FRAME = pd.DataFrame({"sid": list(range(ROWS)), "word": [chr(ord("a") + i) for i in range(ROWS)]})


def write_sources(root: Path) -> dict[str, Any]:
    """The same ten rows as every kind of source."""
    FRAME.to_parquet(root / "rows.parquet", index=False)
    FRAME.to_csv(root / "rows.csv", index=False)
    FRAME.to_json(root / "rows.jsonl", orient="records", lines=True)
    FRAME.to_json(root / "rows.json", orient="records")
    (root / "parts").mkdir()
    FRAME.iloc[:4].to_parquet(root / "parts" / "part-0.parquet", index=False)
    FRAME.iloc[4:].to_parquet(root / "parts" / "part-1.parquet", index=False)
    (root / "parts" / "notes.txt").write_text("not a seed file")
    return {
        "parquet": str(root / "rows.parquet"),
        "csv": str(root / "rows.csv"),
        "jsonl": str(root / "rows.jsonl"),
        "json array": str(root / "rows.json"),
        "directory of parquet": str(root / "parts"),
        "glob": str(root / "parts" / "part-*.parquet"),
        "path object": root / "rows.parquet",
        "DataFrame": FRAME.copy(),
    }


SOURCE_KINDS = ["parquet", "csv", "jsonl", "json array", "directory of parquet", "glob", "path object", "DataFrame"]


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_every_source_kind_reads_the_same_rows(tmp_path: Path, kind: str) -> None:
    source = write_sources(tmp_path)[kind]
    table = load_seed_table(gm.SeedConfig(source=source))
    assert table.to_pydict() == {"sid": list(range(ROWS)), "word": list("abcdefghij")}


@pytest.mark.parametrize("kind", ["parquet", "csv", "directory of parquet", "DataFrame"])
def test_create_with_a_seed_end_to_end(tmp_path: Path, mill: gm.Mill, kind: str) -> None:
    source = write_sources(tmp_path)[kind]
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(source)
           .add_column(name="tag", column_type="expression", expr="{{ word }}-{{ sid }}")
           .build())
    results = mill.create(cfg, num_records=25)
    frame = results.load_dataset()
    assert results.count_records() == 25
    assert frame["sid"].tolist() == [i % ROWS for i in range(25)]
    assert frame["tag"].tolist() == [f"{chr(ord('a') + i % ROWS)}-{i % ROWS}" for i in range(25)]


# ------------------------------------------------------------------------------------------- strategies

def reader(strategy: gm.SamplingStrategy, run_seed: int = 5) -> SeedReader:
    return SeedReader(load_seed_table(gm.SeedConfig(source=FRAME)), strategy, run_seed)


def ids(seed_reader: SeedReader, offset: int, count: int) -> list[int]:
    return seed_reader.rows_for(offset, count).column("sid").to_pylist()


def test_ordered_cycles_through_the_seed() -> None:
    assert ids(reader(gm.SamplingStrategy.ORDERED), 0, 25) == [i % ROWS for i in range(25)]
    assert ids(reader(gm.SamplingStrategy.ORDERED), 8, 5) == [8, 9, 0, 1, 2]


def test_shuffle_makes_every_pass_a_permutation() -> None:
    values = ids(reader(gm.SamplingStrategy.SHUFFLE), 0, 4 * ROWS)
    passes = [values[i:i + ROWS] for i in range(0, len(values), ROWS)]
    for one_pass in passes:
        assert sorted(one_pass) == list(range(ROWS))
    assert passes[0] != list(range(ROWS))
    assert len({tuple(p) for p in passes}) > 1  # each pass is its own permutation


def test_shuffle_is_deterministic_per_run_seed_and_independent_of_batching() -> None:
    whole = ids(reader(gm.SamplingStrategy.SHUFFLE, run_seed=5), 0, 35)
    pieces = [ids(reader(gm.SamplingStrategy.SHUFFLE, run_seed=5), start, 7) for start in range(0, 35, 7)]
    assert [v for piece in pieces for v in piece] == whole
    assert ids(reader(gm.SamplingStrategy.SHUFFLE, run_seed=5), 0, 35) == whole
    assert ids(reader(gm.SamplingStrategy.SHUFFLE, run_seed=6), 0, 35) != whole


def test_shuffled_create_is_reproducible_across_batch_sizes(tmp_path: Path) -> None:
    cfg = gm.ConfigBuilder().with_seed_dataset(FRAME, sampling_strategy="shuffle").add_column(
        name="copy", column_type="expression", expr="{{ sid }}", dtype="int").build()
    runs = []
    for batch_size in (7, 50):
        with gm.Mill(tmp_path / str(batch_size),
                     run_config=gm.RunConfig(batch_size=batch_size, seed=42, show_progress=False)) as mill:
            runs.append(mill.create(cfg, num_records=30).load_dataset())
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert sorted(runs[0]["sid"].iloc[:ROWS]) == list(range(ROWS))
    assert (runs[0]["copy"] == runs[0]["sid"]).all()


# ------------------------------------------------------------------------------------------- selections

def selected(selection: gm.IndexRange | gm.PartitionBlock) -> list[int]:
    return load_seed_table(gm.SeedConfig(source=FRAME, selection_strategy=selection)).column("sid").to_pylist()


def test_index_range_selects_start_to_end() -> None:
    assert selected(gm.IndexRange(start=2, end=5)) == [2, 3, 4, 5]  # end inclusive, as in the reference tool
    assert selected(gm.IndexRange(start=3, end=3)) == [3]
    assert selected(gm.IndexRange(start=0, end=ROWS - 1)) == list(range(ROWS))


def test_partition_blocks_cover_every_row_once() -> None:
    blocks = [selected(gm.PartitionBlock(index=i, num_partitions=3)) for i in range(3)]
    assert [row for block in blocks for row in block] == list(range(ROWS))
    assert all(len(block) in (3, 4) for block in blocks)


def test_selection_then_cycling_through_create(mill: gm.Mill) -> None:
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(FRAME, selection_strategy=gm.PartitionBlock(index=1, num_partitions=2))
           .add_column(name="x", column_type="expression", expr="{{ sid }}")
           .build())
    assert mill.preview(cfg, num_records=12)["sid"].tolist() == [5, 6, 7, 8, 9] * 2 + [5, 6]


@pytest.mark.parametrize(("selection", "words"), [
    (gm.IndexRange(start=2, end=11), ["IndexRange(2, 11)", "out of bounds", "10 rows"]),
    (gm.IndexRange(start=10, end=12), ["IndexRange(10, 12)", "out of bounds"]),
    (gm.PartitionBlock(index=0, num_partitions=11), ["11 partitions", "10 rows"]),
])
def test_selection_out_of_bounds_is_a_seed_error(selection: Any, words: list[str]) -> None:
    with pytest.raises(gm.SeedDatasetError) as info:
        selected(selection)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("make", "words"), [
    (lambda: gm.IndexRange(start=5, end=4), ["must not be less than start", "inclusive"]),
    (lambda: gm.IndexRange(start=-1, end=5), ["start"]),
    (lambda: gm.PartitionBlock(index=3, num_partitions=3), ["must be < num_partitions 3"]),
])
def test_invalid_selections_are_refused_by_the_builder(make: Callable[[], Any], words: list[str]) -> None:
    with pytest.raises((gm.ConfigError, ValueError)) as info:
        gm.ConfigBuilder().with_seed_dataset(FRAME, selection_strategy=make())
    for word in words:
        assert word in str(info.value)


# ------------------------------------------------------------------------------------------- bad sources

def bad_sources(root: Path) -> dict[str, tuple[str, str]]:
    """name -> (source, text the error must contain)."""
    (root / "garbage.parquet").write_bytes(b"this is not parquet")
    (root / "header_only.csv").write_text("sid,word\n")
    (root / "zero_bytes.csv").write_bytes(b"")
    (root / "empty.jsonl").write_text("")
    (root / "empty_array.json").write_text("[]")
    (root / "broken.jsonl").write_text('{"sid": 1}\n{"sid": \n')
    (root / "rows.txt").write_text("sid\n1\n")
    (root / "no_parquet_here").mkdir()
    (root / "no_parquet_here" / "rows.csv").write_text("sid\n1\n")
    (root / "mixed").mkdir()
    pd.DataFrame({"sid": [1]}).to_parquet(root / "mixed" / "a.parquet")
    pd.DataFrame({"sid": ["text"]}).to_parquet(root / "mixed" / "b.parquet")
    return {
        "missing file": (str(root / "missing.parquet"), "does not exist"),
        "glob matching nothing": (str(root / "nothing-*.parquet"), "matches no files"),
        "unreadable parquet": (str(root / "garbage.parquet"), "cannot read"),
        "header-only csv": (str(root / "header_only.csv"), "is empty"),
        "zero-byte csv": (str(root / "zero_bytes.csv"), "zero_bytes.csv"),
        "empty jsonl": (str(root / "empty.jsonl"), "empty.jsonl"),
        "empty json array": (str(root / "empty_array.json"), "is empty"),
        "broken jsonl": (str(root / "broken.jsonl"), "cannot read"),
        "unsupported extension": (str(root / "rows.txt"), "unsupported extension"),
        "directory without parquet": (str(root / "no_parquet_here"), "holds no .parquet files"),
        "incompatible schemas": (str(root / "mixed"), "incompatible schemas"),
    }


BAD_KINDS = ["missing file", "glob matching nothing", "unreadable parquet", "header-only csv", "zero-byte csv",
             "empty jsonl", "empty json array", "broken jsonl", "unsupported extension",
             "directory without parquet", "incompatible schemas"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_seed_sources_raise_seed_errors_naming_the_path(tmp_path: Path, mill: gm.Mill, kind: str) -> None:
    source, words = bad_sources(tmp_path)[kind]
    cfg = gm.ConfigBuilder().with_seed_dataset(source).add_column(
        name="x", column_type="expression", expr="1").build()
    for action in (lambda: mill.validate(cfg), lambda: mill.create(cfg, num_records=3, dataset_name="bad")):
        with pytest.raises(gm.SeedDatasetError) as info:
            action()
        assert words in str(info.value)
        assert Path(source).name in str(info.value) or "mixed" in str(info.value)
    assert not (mill.artifact_path / "bad").exists()


def test_empty_dataframe_seed_is_a_seed_error(mill: gm.Mill) -> None:
    cfg = gm.ConfigBuilder().with_seed_dataset(FRAME.iloc[:0]).add_column(
        name="x", column_type="expression", expr="1").build()
    with pytest.raises(gm.SeedDatasetError, match="in-memory DataFrame is empty"):
        mill.preview(cfg)


def test_seed_source_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(gm.ConfigError, match="path or a pandas DataFrame"):
        gm.ConfigBuilder().with_seed_dataset(42)


def test_seed_column_clash_is_a_config_error_before_anything_is_written(tmp_path: Path, mill: gm.Mill) -> None:
    source = write_sources(tmp_path)["parquet"]
    cfg = gm.ConfigBuilder().with_seed_dataset(source).add_column(
        name="word", column_type="expression", expr="{{ sid }}").build()
    with pytest.raises(gm.ConfigError, match="'word' is both a seed column and a generated column"):
        mill.create(cfg, num_records=3, dataset_name="clash")
    assert not (mill.artifact_path / "clash").exists()


def test_dataframe_seed_with_a_mixed_type_column_is_a_seed_error(mill: gm.Mill) -> None:
    cfg = gm.ConfigBuilder().with_seed_dataset(pd.DataFrame({"v": [1, "a"]})).add_column(
        name="x", column_type="expression", expr="{{ v }}").build()
    with pytest.raises(gm.SeedDatasetError, match="in-memory DataFrame cannot be stored as parquet.*column v"):
        mill.validate(cfg)


def test_pandas_index_columns_unnamed_are_dropped_named_are_kept(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [7, 8, 9], "name": ["a", "b", "c"]})
    frame[frame.user_id > 7].to_parquet(tmp_path / "filtered.parquet")  # unnamed index 1, 2
    frame.set_index("user_id").to_parquet(tmp_path / "named.parquet")
    filtered = load_seed_table(gm.SeedConfig(source=str(tmp_path / "filtered.parquet")))
    named = load_seed_table(gm.SeedConfig(source=str(tmp_path / "named.parquet")))
    assert filtered.column_names == ["user_id", "name"]
    assert sorted(named.column_names) == ["name", "user_id"] and named.column("user_id").to_pylist() == [7, 8, 9]
