"""The batch journal: commits append one line; readers fold it into metadata; a torn line is the
batch in flight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.storage.journal import JOURNAL_FILE, BatchJournal, read_journal
from gristmill.storage.metadata import BatchRecord, DatasetMetadata


def _meta(rows: int = 30) -> DatasetMetadata:
    meta = DatasetMetadata(gristmill_version="t", dataset_name="d", fingerprint="f", fingerprint_version=1,
                           run_seed=1, batch_size=10, target_rows=rows)
    meta.plan_rows(rows)
    return meta


def _record(index: int, seconds: float = 0.5) -> BatchRecord:
    return BatchRecord(index=index, file=f"parquet-files/batch_{index:05d}.parquet", rows=10, bytes=100,
                       sha256=f"h{index}", row_offset=10 * index, seconds=seconds)


def _write(tmp_path: Path, meta: DatasetMetadata, records: list[BatchRecord]) -> Path:
    path = tmp_path / "metadata.json"
    meta.save(path)
    journal = BatchJournal(tmp_path / JOURNAL_FILE)
    for record in records:
        meta.commit_batch(record)
        meta.usage = {"m": {"requests": record.index + 1}}
        journal.append(meta.journal_entry(record))
    journal.close()
    return path


def test_load_folds_in_the_journal(tmp_path: Path) -> None:
    path = _write(tmp_path, _meta(), [_record(0), _record(1)])
    loaded = DatasetMetadata.load(path)
    assert [b.index for b in loaded.completed_batches] == [0, 1]
    assert loaded.usage == {"m": {"requests": 2}} and loaded.generation_seconds == 1.0
    assert [s.index for s in loaded.missing_batches()] == [2]


@pytest.mark.parametrize("tail", [b'{"batch": {"index": 2, "fi', b"garbage without newline", b"\x00\x00\x00"])
def test_a_torn_last_line_is_the_batch_in_flight(tmp_path: Path, tail: bytes) -> None:
    path = _write(tmp_path, _meta(), [_record(0), _record(1)])
    with open(tmp_path / JOURNAL_FILE, "ab") as handle:
        handle.write(tail)
    assert [b.index for b in DatasetMetadata.load(path).completed_batches] == [0, 1]
    assert len(read_journal(tmp_path / JOURNAL_FILE)) == 2


def test_a_complete_line_that_is_not_a_batch_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, _meta(), [_record(0)])
    with open(tmp_path / JOURNAL_FILE, "ab") as handle:
        handle.write(json.dumps({"batch": {"index": "x"}}).encode() + b"\n")
    with pytest.raises(gm.ArtifactError, match="batches.journal line 2 is not a batch record"):
        DatasetMetadata.load(path)


def test_a_crash_between_compaction_and_journal_removal_counts_nothing_twice(tmp_path: Path) -> None:
    meta = _meta()
    path = _write(tmp_path, meta, [_record(0), _record(1)])
    meta.generation_seconds = 1.0
    meta.save(path)  # compacted, but the journal is still there
    loaded = DatasetMetadata.load(path)
    assert [b.index for b in loaded.completed_batches] == [0, 1] and loaded.generation_seconds == 1.0


def test_a_finished_run_is_compacted_into_metadata_json(tmp_path: Path) -> None:
    cfg = gm.ConfigBuilder().add_column(name="x", column_type="sampler", sampler_type="uniform",
                                        params={"low": 0, "high": 1}).build()
    mill = gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=10, show_progress=False))
    results = mill.create(cfg, num_records=95, dataset_name="d")
    assert not (results.artifact_path / JOURNAL_FILE).exists()
    stored = json.loads((results.artifact_path / "metadata.json").read_text())
    assert stored["status"] == "completed" and len(stored["completed_batches"]) == 10
