"""Custom columns: a user's function per row or per batch, and clear errors when it misbehaves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gristmill as gm

SEED = pd.DataFrame({"v": range(120), "word": [f"w{i}" for i in range(120)]})


def config(function: Callable[..., Any] | str, *, mode: str = "row", reads: list[str] | None = None,
           writes: list[str] | None = None, name: str = "out") -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .with_seed_dataset(SEED)
            .add_column(name=name, column_type="custom", function=function, mode=mode,
                        reads=["v"] if reads is None else reads, writes=writes or [])
            .build())


def square(row: dict[str, Any]) -> int:
    return int(row["v"] ** 2)


def square_batch(df: pd.DataFrame) -> pd.Series:
    return df["v"] ** 2


# ------------------------------------------------------------------------------------------- happy paths

def test_row_mode_through_create(mill: gm.Mill) -> None:
    frame = mill.create(config(square), num_records=120).load_dataset()
    assert frame["out"].tolist() == [v * v for v in range(120)]


def test_batch_mode_through_create_gets_each_batch(mill: gm.Mill) -> None:
    sizes: list[int] = []

    def record(df: pd.DataFrame) -> list[int]:
        sizes.append(len(df))
        assert list(df.columns) == ["v"]
        return (df["v"] * 10).tolist()

    frame = mill.create(config(record, mode="batch"), num_records=120).load_dataset()
    assert frame["out"].tolist() == [v * 10 for v in range(120)]
    assert sizes == [50, 50, 20]


def test_function_by_module_qualname(mill: gm.Mill, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(gm.ConfigError, match="allow_modules"):  # configs are data: docs/trust.md
        mill.preview(config(f"{__name__}:square_batch", mode="batch"), num_records=5)
    monkeypatch.setenv("GRISTMILL_ALLOW_MODULES", __name__)
    by_name = mill.preview(config(f"{__name__}:square_batch", mode="batch"), num_records=5)
    assert by_name["out"].tolist() == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_multiple_writes(mill: gm.Mill, mode: str) -> None:
    def per_row(row: dict[str, Any]) -> dict[str, Any]:
        return {"double": row["v"] * 2, "text": f"{row['word']}!"}

    def per_batch(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"text": df["word"] + "!", "double": df["v"] * 2, "ignored": 0})

    cfg = config(per_row if mode == "row" else per_batch, mode=mode, reads=["v", "word"],
                 writes=["double", "text"])
    frame = mill.create(cfg, num_records=60).load_dataset()
    assert list(frame.columns) == ["v", "word", "double", "text"]
    assert frame["double"].tolist() == [v * 2 for v in range(60)]
    assert frame["text"].tolist() == [f"w{v}!" for v in range(60)]


@pytest.mark.parametrize("result", [
    lambda df: {"double": (df["v"] * 2).to_numpy(), "text": list(df["word"])},
    lambda df: {"double": df["v"] * 2, "text": df["word"].to_numpy()},
])
def test_batch_mode_accepts_dicts_of_arrays_and_series(mill: gm.Mill, result: Callable[..., Any]) -> None:
    cfg = config(result, mode="batch", reads=["v", "word"], writes=["double", "text"])
    frame = mill.preview(cfg, num_records=7)
    assert frame["double"].tolist() == [v * 2 for v in range(7)]
    assert frame["text"].tolist() == [f"w{v}" for v in range(7)]


def test_batch_mode_aligns_a_reordered_series_by_index(mill: gm.Mill) -> None:
    # Sorting keeps each value's index label; pandas users expect values to land on their rows.
    cfg = config(lambda df: (df["v"] * -1).sort_values(), mode="batch")
    frame = mill.preview(cfg, num_records=60)
    assert frame["out"].tolist() == [-v for v in range(60)]


def test_batch_mode_aligns_a_reordered_dataframe_by_index(mill: gm.Mill) -> None:
    def shuffled(df: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame({"a": df["v"] + 1, "b": df["v"] + 2})
        return out.sample(frac=1.0, random_state=0)

    frame = mill.preview(config(shuffled, mode="batch", writes=["a", "b"]), num_records=30)
    assert frame["a"].tolist() == [v + 1 for v in range(30)]
    assert frame["b"].tolist() == [v + 2 for v in range(30)]


def test_custom_columns_chain_in_dependency_order(mill: gm.Mill) -> None:
    cfg = (gm.ConfigBuilder()
           .with_seed_dataset(SEED)
           .add_column(name="third", column_type="custom", function=lambda r: r["second"] + 1, reads=["second"])
           .add_column(name="second", column_type="expression", expr="{{ first * 2 }}", dtype="int")
           .add_column(name="first", column_type="custom", function=square_batch, mode="batch", reads=["v"])
           .build())
    frame = mill.preview(cfg, num_records=5)
    assert frame["third"].tolist() == [2 * v * v + 1 for v in range(5)]


def test_values_keep_their_types_in_parquet(mill: gm.Mill) -> None:
    cfg = config(lambda r: {"f": r["v"] / 2, "b": r["v"] % 2 == 0, "s": str(r["v"]), "l": [r["v"]] * 2},
                 writes=["f", "b", "s", "l"])
    frame = mill.create(cfg, num_records=10).load_dataset()
    assert frame["f"].dtype == np.float64
    assert frame["b"].dtype == np.bool_
    assert frame["s"].tolist() == [str(v) for v in range(10)]
    assert [list(x) for x in frame["l"]] == [[v, v] for v in range(10)]


# ------------------------------------------------------------------------------------------- bad results

def fail_on_77(row: dict[str, Any]) -> int:
    if row["v"] == 77:
        raise ValueError("seventy-seven is not allowed")
    return 1


def test_exception_in_row_function_fails_that_cell_naming_column_and_row(mill: gm.Mill) -> None:
    frame = mill.preview(config(fail_on_77), num_records=100)
    failed = frame[frame["__errors"].notna()]
    assert failed["v"].tolist() == [77] and failed["out"].isna().all()
    (problem,) = failed["__errors"].iloc[0]
    assert problem["column"] == "out" and problem["kind"] == "failed" and problem["attempts"] == 1
    assert "row 77" in problem["reason"] and "ValueError: seventy-seven is not allowed" in problem["reason"]
    assert frame.loc[frame["v"] != 77, "out"].eq(1).all()


def test_a_row_function_failing_on_most_rows_stops_the_run(mill: gm.Mill) -> None:
    def always(row: dict[str, Any]) -> int:
        raise ValueError("broken")

    with pytest.raises(gm.GenerationError, match=r"stopping: .* rows of custom column 'out' failed; last error: "
                                                 r"custom column 'out' failed on row \d+: ValueError: broken"):
        mill.preview(config(always), num_records=100)


def test_exception_in_batch_function_names_column_and_batch(mill: gm.Mill) -> None:
    def fail_second_batch(df: pd.DataFrame) -> pd.Series:
        if df["v"].iloc[0] >= 50:
            raise RuntimeError("boom")
        return df["v"]

    with pytest.raises(gm.GenerationError, match=r"'out' failed on batch 1: RuntimeError: boom"):
        mill.preview(config(fail_second_batch, mode="batch"), num_records=100)


def test_reading_an_undeclared_column_says_to_declare_it(mill: gm.Mill) -> None:
    with pytest.raises(gm.GenerationError, match=r"KeyError: 'word'.*add 'word' to reads"):
        mill.preview(config(lambda r: r["word"], reads=["v"]), num_records=3)


@pytest.mark.parametrize(("result", "words"), [
    (lambda df: [1, 2], ["'out'", "returned 2 values", "batch of 5 rows"]),
    (lambda df: 42, ["'out'", "single value"]),
    (lambda df: "abcde", ["'out'", "single value"]),
    (lambda df: None, ["'out'", "single value"]),
    (lambda df: df["v"].iloc[:3], ["'out'", "3 values"]),
    (lambda df: pd.Series(range(5), index=range(100, 105)), ["'out'", "index"]),
    (lambda df: {"other": [1] * 5}, ["'out'", "did not return", "'out'"]),
    (lambda df: pd.DataFrame({"other": df["v"]}), ["'out'", "did not return"]),
])
def test_wrong_batch_results_are_generation_errors(mill: gm.Mill, result: Callable[..., Any],
                                                   words: list[str]) -> None:
    with pytest.raises(gm.GenerationError) as info:
        mill.preview(config(result, mode="batch"), num_records=5)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("result", "words"), [
    (lambda r: {"a": 1}, ["'out'", "['a', 'b']", "row 0"]),
    (lambda r: {"a": 1, "b": 2, "c": 3}, ["'out'", "['a', 'b']"]),
    (lambda r: 5, ["'out'", "dict with keys"]),
])
def test_wrong_row_keys_are_generation_errors(mill: gm.Mill, result: Callable[..., Any], words: list[str]) -> None:
    with pytest.raises(gm.GenerationError) as info:
        mill.preview(config(result, writes=["a", "b"]), num_records=3)
    for word in words:
        assert word in str(info.value)


def test_wrong_batch_keys_for_multiple_writes(mill: gm.Mill) -> None:
    with pytest.raises(gm.GenerationError, match=r"did not return column\(s\) \['b'\]"):
        mill.preview(config(lambda df: {"a": df["v"]}, mode="batch", writes=["a", "b"]), num_records=3)
    with pytest.raises(gm.GenerationError, match="DataFrame or a dict"):
        mill.preview(config(lambda df: df["v"], mode="batch", writes=["a", "b"]), num_records=3)


def test_mixed_types_are_a_generation_error_naming_the_column(mill: gm.Mill) -> None:
    with pytest.raises(gm.GenerationError, match="'out'.*mixed types"):
        mill.create(config(lambda r: r["v"] if r["v"] % 2 else "text"), num_records=4)


def fail_from_77(df: pd.DataFrame) -> pd.Series:
    if (df["v"] >= 77).any():
        raise ValueError("seventy-seven and up are not allowed")
    return df["v"]


def test_failed_create_keeps_completed_batches(mill: gm.Mill) -> None:
    with pytest.raises(gm.GenerationError):
        mill.create(config(fail_from_77, mode="batch"), num_records=120, dataset_name="partial")
    done = sorted(p.name for p in (mill.artifact_path / "partial" / "parquet-files").glob("*.parquet"))
    assert done == ["batch_00000.parquet"]
