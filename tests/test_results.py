"""DatasetResults (load, count, export, follow-up configs), preview and validate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import gristmill as gm


def _config() -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="topic", column_type="sampler", sampler_type="category",
                        params={"values": ["billing", "shipping"]})
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 9, "integer": True})
            .add_column(name="when", column_type="sampler", sampler_type="datetime",
                        params={"start": "2025-01-01", "end": "2025-02-01"})
            .add_column(name="text", column_type="expression", expr="{{ topic }} x{{ n }}")
            .build())


@pytest.fixture()
def results(tmp_path: Path) -> gm.DatasetResults:
    mill = gm.Mill(tmp_path / "art", run_config=gm.RunConfig(batch_size=40, seed=3, show_progress=False))
    return mill.create(_config(), num_records=100, dataset_name="ds")


def test_load_and_count(results: gm.DatasetResults) -> None:
    frame = results.load_dataset()
    assert list(frame.columns) == ["topic", "n", "when", "text"]
    assert len(frame) == 100 == results.count_records()
    assert [p.name for p in results.batch_files()] == [f"batch_0000{i}.parquet" for i in range(3)]
    assert results.metadata.actual_rows == 100 and results.metadata.status == "completed"
    assert (frame["text"] == frame["topic"] + " x" + frame["n"].astype(str)).all()


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_export_equals_dataset(results: gm.DatasetResults, tmp_path: Path, suffix: str) -> None:
    out = results.export(tmp_path / "out" / f"data.{suffix}")
    expected = results.load_dataset()
    if suffix == "jsonl":
        lines = out.read_text().splitlines()
        assert len(lines) == 100
        assert [json.loads(line)["text"] for line in lines] == expected["text"].tolist()
    elif suffix == "csv":
        assert pd.read_csv(out)["text"].tolist() == expected["text"].tolist()
    else:
        assert pq.read_table(out).to_pandas().equals(expected)
    assert not list(out.parent.glob(".*tmp"))


def test_export_format_argument_and_bad_format(results: gm.DatasetResults, tmp_path: Path) -> None:
    out = results.export(tmp_path / "data.txt", format="jsonl")
    assert len(out.read_text().splitlines()) == 100
    with pytest.raises(gm.ConfigError, match="format 'xlsx' is not one of jsonl, csv, parquet"):
        results.export(tmp_path / "data.xlsx")


def test_to_config_builder_seeds_a_follow_up_dataset(results: gm.DatasetResults, tmp_path: Path) -> None:
    follow = (results.to_config_builder(columns=["topic", "n"])
              .add_column(name="double", column_type="expression", expr="{{ n * 2 }}", dtype="int")
              .build())
    mill = gm.Mill(tmp_path / "art2", run_config=gm.RunConfig(batch_size=40, seed=3, show_progress=False))
    out = mill.create(follow, num_records=100, dataset_name="follow").load_dataset()
    source = results.load_dataset()
    assert list(out.columns) == ["topic", "n", "double"]
    assert out["topic"].tolist() == source["topic"].tolist()
    assert (out["double"] == source["n"] * 2).all()
    whole = results.to_config_builder().build()
    assert whole.seed is not None and whole.seed.source.endswith("parquet-files")
    with pytest.raises(gm.ConfigError, match=r"columns \['nope'\] are not in the dataset"):
        results.to_config_builder(columns=["nope"])


def test_preview_writes_nothing(tmp_path: Path) -> None:
    mill = gm.Mill(tmp_path / "art", run_config=gm.RunConfig(seed=3, show_progress=False))
    frame = mill.preview(_config(), num_records=7)
    assert len(frame) == 7 and list(frame.columns) == ["topic", "n", "when", "text"]
    assert not (tmp_path / "art").exists()


def test_preview_equals_first_rows_of_create(tmp_path: Path) -> None:
    mill = gm.Mill(tmp_path / "art", run_config=gm.RunConfig(batch_size=40, seed=3, show_progress=False))
    preview = mill.preview(_config(), num_records=45)
    created = mill.create(_config(), num_records=45, dataset_name="ds").load_dataset()
    # parquet stores second-resolution timestamps as milliseconds; the values are the same
    pd.testing.assert_frame_equal(preview, created, check_dtype=False)


def test_validate_is_static(tmp_path: Path) -> None:
    mill = gm.Mill(tmp_path / "art")
    mill.validate(_config())
    broken = gm.ConfigBuilder().add_column(name="a", column_type="expression", expr="{{ missing }}").build()
    with pytest.raises(gm.ConfigError, match="column 'a' references 'missing'"):
        mill.validate(broken)
    with pytest.raises(gm.ConfigError, match="no columns"):
        mill.validate(gm.ConfigBuilder().build())
    assert not (tmp_path / "art").exists()


def test_analysis_is_computed_on_request_or_at_create(results: gm.DatasetResults, tmp_path: Path) -> None:
    assert not (results.artifact_path / "analysis.json").exists()  # off by default: create stays fast
    eager = gm.Mill(tmp_path / "eager", run_config=gm.RunConfig(batch_size=40, seed=3, show_progress=False,
                                                                 analysis=True))
    assert (eager.create(_config(), num_records=10, dataset_name="ds").artifact_path / "analysis.json").exists()
    analysis = results.load_analysis()
    assert (results.artifact_path / "analysis.json").exists()
    stats = {c.name: c for c in analysis.columns}
    frame = results.load_dataset()
    assert analysis.rows == 100
    assert stats["n"].min == frame["n"].min() and stats["n"].max == frame["n"].max()
    assert stats["n"].mean == pytest.approx(frame["n"].mean())
    assert dict(stats["topic"].top_values or []) == frame["topic"].value_counts().to_dict()
    assert stats["text"].nulls == 0 and stats["when"].min.startswith("2025-01")


def test_exports_keep_float_precision_and_nested_values(tmp_path: Path) -> None:
    config = (gm.ConfigBuilder()
              .add_column(name="tiny", column_type="sampler", sampler_type="gaussian",
                          params={"mean": 0, "stddev": 1e-9})
              .add_column(name="who", column_type="sampler", sampler_type="person", params={})
              .build())
    mill = gm.Mill(tmp_path / "art", run_config=gm.RunConfig(batch_size=10, seed=1, show_progress=False))
    results = mill.create(config, num_records=20, dataset_name="ds")
    frame = results.load_dataset()
    lines = results.export(tmp_path / "d.jsonl").read_text().splitlines()
    assert [json.loads(line)["tiny"] for line in lines] == frame["tiny"].tolist()  # exact, not rounded
    assert json.loads(lines[0])["who"]["first_name"] == frame["who"][0]["first_name"]
    csv = pd.read_csv(results.export(tmp_path / "d.csv"))
    assert json.loads(csv["who"][0])["birth_date"] == frame["who"][0]["birth_date"].isoformat()
    assert csv["tiny"].tolist() == pytest.approx(frame["tiny"].tolist(), rel=1e-12)


def test_a_named_pandas_index_in_a_callback_like_file_survives_load_and_export(tmp_path: Path) -> None:
    from gristmill.results import iter_parquet_tables, read_parquet_files

    frame = pd.DataFrame({"topic": ["a", "b", "c"], "n": [1, 2, 3]})
    frame.set_index("topic").to_parquet(tmp_path / "grouped.parquet")  # string index: a stored column
    pd.DataFrame({"n": [4, 5]}, index=pd.RangeIndex(3, 5, name="row")).to_parquet(tmp_path / "ranged.parquet")
    grouped = read_parquet_files([tmp_path / "grouped.parquet"])
    assert sorted(grouped.columns) == ["n", "topic"]
    ranged = list(iter_parquet_tables([tmp_path / "ranged.parquet"]))[0]
    assert ranged.column_names == ["row", "n"] and ranged.column("row").to_pylist() == [3, 4]


def test_jsonl_export_writes_durations_as_seconds(tmp_path: Path) -> None:
    import datetime as dt

    config = (gm.ConfigBuilder()
              .add_column(name="n", column_type="sampler", sampler_type="uniform",
                          params={"low": 1, "high": 9, "integer": True})
              .add_column(name="wait", column_type="custom", reads=["n"], version="1",
                          function=lambda row: dt.timedelta(minutes=row["n"]))
              .build())
    mill = gm.Mill(tmp_path / "art", run_config=gm.RunConfig(batch_size=10, seed=1, show_progress=False))
    results = mill.create(config, num_records=5, dataset_name="ds")
    rows = [json.loads(line) for line in results.export(tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["wait"] for r in rows] == [r["n"] * 60.0 for r in rows]
