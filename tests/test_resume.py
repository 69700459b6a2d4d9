"""create() resume: crash recovery (SIGKILL), modes, extension, corrupt and truncated artifacts, locks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import gristmill as gm
from gristmill.storage.metadata import DatasetMetadata

SRC = Path(__file__).resolve().parents[1] / "src"

CONFIG_YAML = """
columns:
  - {name: id, column_type: sampler, sampler_type: uuid, params: {}}
  - name: category
    column_type: sampler
    sampler_type: category
    params: {values: [a, b, c]}
  - {name: price, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 100, decimal_places: 2}}
  - {name: label, column_type: expression, expr: "{{ category }}-{{ price }}"}
  - name: doubled
    column_type: custom
    function: "slowfns:slow_double"
    mode: batch
    reads: [price]
    version: "1"
"""

SLOW_FUNCTIONS = """
import os, time

def slow_double(df):
    time.sleep(float(os.environ.get("GRISTMILL_TEST_SLEEP", "0")))
    return df["price"] * 2
"""

RUNNER = """
import sys
import gristmill as gm
from gristmill.storage.metadata import DatasetMetadata
config = gm.DatasetConfig.from_yaml(sys.argv[1])
mill = gm.Mill(sys.argv[2], run_config=gm.RunConfig(batch_size=20, seed=99, show_progress=False))
mill.create(config, num_records=int(sys.argv[3]), dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
"""


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "slowfns.py").write_text(SLOW_FUNCTIONS)
    (tmp_path / "config.yaml").write_text(CONFIG_YAML)
    (tmp_path / "runner.py").write_text(RUNNER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GRISTMILL_TEST_SLEEP", "0")
    return tmp_path


def _config(workdir: Path) -> gm.DatasetConfig:
    return gm.DatasetConfig.from_yaml(workdir / "config.yaml")


def _mill(path: Path, **run: object) -> gm.Mill:
    options = {"batch_size": 20, "seed": 99, "show_progress": False, **run}
    return gm.Mill(path, run_config=gm.RunConfig(**options))


def _start_runner(workdir: Path, artifacts: Path, num_records: int, sleep: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{workdir}", "GRISTMILL_TEST_SLEEP": str(sleep)}
    return subprocess.Popen([sys.executable, str(workdir / "runner.py"), str(workdir / "config.yaml"),
                             str(artifacts), str(num_records)], env=env, stderr=subprocess.PIPE)


def _wait_for_batches(directory: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(directory.glob("batch_*.parquet"))) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"runner exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} batch files appeared in {directory}")


def _digests(results: gm.DatasetResults) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in results.batch_files()]


def test_sigkill_mid_run_then_resume_equals_uninterrupted_run(workdir: Path) -> None:
    artifacts = workdir / "crashed"
    proc = _start_runner(workdir, artifacts, num_records=400, sleep=0.1)
    _wait_for_batches(artifacts / "ds" / "parquet-files", 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    # metadata.json plus the batch journal (the committed batches since the run started)
    meta = DatasetMetadata.load(artifacts / "ds" / "metadata.json")
    assert meta.status == "running"  # the crash left the run unfinished...
    assert (artifacts / "ds" / "batches.journal").exists()
    done_before = len(meta.completed_batches)
    assert 3 <= done_before < 20  # ...with some, not all, batches durable

    resumed = _mill(artifacts).create(_config(workdir), num_records=400, dataset_name="ds",
                                      resume=gm.ResumeMode.ALWAYS)
    reference = _mill(workdir / "reference").create(_config(workdir), num_records=400, dataset_name="ds")

    frame = resumed.load_dataset()
    assert len(frame) == 400 == resumed.count_records()
    assert frame["id"].is_unique
    assert resumed.metadata.status == "completed"
    assert _digests(resumed) == _digests(reference)  # byte for byte
    assert frame.equals(reference.load_dataset())


def test_second_run_is_refused_while_first_holds_the_lock_and_dead_holder_is_recovered(workdir: Path) -> None:
    artifacts = workdir / "locked"
    proc = _start_runner(workdir, artifacts, num_records=2000, sleep=0.2)
    try:
        _wait_for_batches(artifacts / "ds" / "parquet-files", 1, proc)
        with pytest.raises(gm.LockedError, match=rf"pid {proc.pid} on .*started"):
            _mill(artifacts).create(_config(workdir), num_records=2000, dataset_name="ds",
                                    resume=gm.ResumeMode.ALWAYS)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # The kernel released the dead holder's lock: the next run takes it and finishes.
    done = _mill(artifacts).create(_config(workdir), num_records=2000, dataset_name="ds",
                                   resume=gm.ResumeMode.ALWAYS)
    assert done.count_records() == 2000


def test_complete_dataset_resumes_as_noop_and_grows_on_larger_num_records(workdir: Path) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=50, dataset_name="ds")
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.batch_files()}
    again = mill.create(_config(workdir), num_records=50, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)
    assert {p.name: p.stat().st_mtime_ns for p in again.batch_files()} == mtimes

    before = first.load_dataset()
    grown = mill.create(_config(workdir), num_records=90, dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
    assert grown.artifact_path == first.artifact_path
    assert grown.count_records() == 90 and grown.generated_rows == 40
    # Every batch already written, the partial last one included, is untouched: growing only appends.
    after = {p.name: p.stat().st_mtime_ns for p in grown.batch_files()}
    assert {name: after[name] for name in mtimes} == mtimes
    assert [b.rows for b in grown.metadata.completed_batches] == [20, 20, 10, 20, 20]
    assert [b.row_offset for b in grown.metadata.completed_batches] == [0, 20, 40, 50, 70]
    frame = grown.load_dataset()
    assert frame.head(50).equals(before) and frame["id"].is_unique
    # Growing in steps equals growing in the same steps again (deterministic), crash or not.
    again = _mill(workdir / "b")
    again.create(_config(workdir), num_records=50, dataset_name="ds")
    regrown = again.create(_config(workdir), num_records=90, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)
    assert _digests(grown) == _digests(regrown)


def test_never_does_not_overwrite(workdir: Path) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=30, dataset_name="ds", resume="never")
    before = _digests(first)
    with pytest.warns(UserWarning, match="already holds data; writing to"):
        second = mill.create(_config(workdir), num_records=30, dataset_name="ds", resume="never")
    assert second.artifact_path != first.artifact_path
    assert second.artifact_path.name.startswith("ds_")
    assert _digests(first) == before


def test_if_possible_starts_fresh_and_says_why_always_raises(workdir: Path) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=30, dataset_name="ds")
    changed = gm.ConfigBuilder.from_config(_config(workdir))
    config = changed.build()
    config.columns[3] = gm.ExpressionColumn(name="label", expr="{{ category }}/{{ price }}")
    with pytest.raises(gm.ResumeError, match="expr of column 'label' changed"):
        mill.create(config, num_records=30, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)
    with pytest.warns(UserWarning, match="expr of column 'label' changed.*starting fresh"):
        fresh = mill.create(config, num_records=30, dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
    assert fresh.artifact_path != first.artifact_path

    other_batch = _mill(workdir / "a", batch_size=10)
    with pytest.raises(gm.ResumeError, match="batch_size is 10, the stored run used 20"):
        other_batch.create(_config(workdir), num_records=30, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)
    other_seed = _mill(workdir / "a", seed=5)
    with pytest.raises(gm.ResumeError, match="seed is 5, the stored run used 99"):
        other_seed.create(_config(workdir), num_records=30, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)


def test_always_with_nothing_to_resume_raises(workdir: Path) -> None:
    with pytest.raises(gm.ResumeError, match="holds no dataset to resume"):
        _mill(workdir / "a").create(_config(workdir), num_records=10, dataset_name="ds", resume="always")


def test_drawn_seed_is_recorded_and_reused_on_resume(workdir: Path) -> None:
    mill = gm.Mill(workdir / "a", run_config=gm.RunConfig(batch_size=20, show_progress=False))
    first = mill.create(_config(workdir), num_records=20, dataset_name="ds")
    grown = mill.create(_config(workdir), num_records=40, dataset_name="ds", resume="always")
    assert grown.metadata.run_seed == first.metadata.run_seed
    reference = _mill(workdir / "b", seed=first.metadata.run_seed).create(_config(workdir), num_records=40,
                                                                         dataset_name="ds")
    assert _digests(grown) == _digests(reference)


CORRUPTIONS = [
    ('{"schema_version": 1, "fingerprint": ', r"metadata.json is corrupt"),
    (json.dumps({"schema_version": 1, "dataset_name": "ds"}), r"not valid dataset metadata"),
    (json.dumps({"schema_version": 99}), r"schema_version 99"),
]


@pytest.mark.parametrize(("text", "message"), CORRUPTIONS)
def test_corrupt_metadata_raises_under_always_and_keeps_files(workdir: Path, text: str, message: str) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=40, dataset_name="ds")
    files = {p: p.read_bytes() for p in first.batch_files()}
    (first.artifact_path / "metadata.json").write_text(text)
    with pytest.raises(gm.ArtifactError, match=message):
        mill.create(_config(workdir), num_records=40, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)
    assert {p: p.read_bytes() for p in files} == files


@pytest.mark.parametrize(("text", "message"), CORRUPTIONS)
def test_corrupt_metadata_under_if_possible_starts_fresh_elsewhere(workdir: Path, text: str, message: str) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=40, dataset_name="ds")
    files = {p: p.read_bytes() for p in first.batch_files()}
    (first.artifact_path / "metadata.json").write_text(text)
    with pytest.warns(UserWarning, match=message + ".*starting fresh in"):
        fresh = mill.create(_config(workdir), num_records=40, dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
    assert fresh.artifact_path != first.artifact_path and fresh.count_records() == 40
    assert {p: p.read_bytes() for p in files} == files
    assert (first.artifact_path / "metadata.json").read_text() == text


def test_truncated_batch_file_raises_naming_it_and_is_not_touched(workdir: Path) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=40, dataset_name="ds")
    victim = first.batch_files()[1]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(gm.ArtifactError, match=r"batch_00001.parquet is truncated or altered"):
        mill.create(_config(workdir), num_records=60, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)
    assert victim.stat().st_size == 100
    with pytest.warns(UserWarning, match=r"batch_00001.parquet is truncated or altered.*starting fresh in"):
        fresh = mill.create(_config(workdir), num_records=60, dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
    assert fresh.artifact_path != first.artifact_path and victim.stat().st_size == 100
    victim.unlink()
    with pytest.raises(gm.ArtifactError, match=r"batch_00001.parquet is recorded as complete but missing"):
        mill.create(_config(workdir), num_records=60, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)


def test_batch_file_altered_at_the_same_size_is_caught_by_its_footer(workdir: Path) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=40, dataset_name="ds")
    victim = first.batch_files()[0]
    data = bytearray(victim.read_bytes())
    data[-12:-8] = b"\xff\xff\xff\x7f"  # the footer length field: same size, unreadable footer
    victim.write_bytes(bytes(data))
    with pytest.raises(gm.ArtifactError, match=r"batch_00000.parquet is corrupt"):
        mill.create(_config(workdir), num_records=60, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)


def test_foreign_directory_is_never_overwritten(workdir: Path) -> None:
    target = workdir / "a" / "ds"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(gm.ArtifactError, match="has no metadata.json"):
        _mill(workdir / "a").create(_config(workdir), num_records=10, dataset_name="ds", resume="always")
    with pytest.warns(UserWarning, match="has no metadata.json.*starting fresh in"):
        fresh = _mill(workdir / "a").create(_config(workdir), num_records=10, dataset_name="ds", resume="if-possible")
    assert fresh.artifact_path != target
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"] and (target / "notes.txt").read_text() == "mine"


def test_bad_resume_mode_and_unwritable_artifact_path_are_clear_errors(workdir: Path) -> None:
    with pytest.raises(gm.ConfigError, match="resume must be one of never, if-possible, always, got 'sometimes'"):
        _mill(workdir / "a").create(_config(workdir), num_records=10, dataset_name="ds", resume="sometimes")
    (workdir / "file").write_text("not a directory")
    with pytest.raises(gm.ArtifactError, match="cannot create .*choose a writable artifact path"):
        _mill(workdir / "file").create(_config(workdir), num_records=10, dataset_name="ds")


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_num_records_must_be_positive_int(workdir: Path, bad: object) -> None:
    with pytest.raises(gm.ConfigError, match="num_records must be a positive integer"):
        _mill(workdir / "a").create(_config(workdir), num_records=bad, dataset_name="ds")  # type: ignore[arg-type]
    assert not (workdir / "a").exists()


def test_failed_run_is_marked_failed_and_resumable(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    def flaky(frame: pd.DataFrame) -> pd.Series:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return frame["price"] + 1

    config = (gm.ConfigBuilder()
              .add_column(name="price", column_type="sampler", sampler_type="uniform", params={"low": 0, "high": 1})
              .add_column(name="plus", column_type="custom", function=flaky, mode="batch", reads=["price"],
                          version="1")
              .build())
    mill = _mill(workdir / "a")
    with pytest.raises(gm.GenerationError, match="custom column 'plus' failed on batch 2: RuntimeError: boom"):
        mill.create(config, num_records=60, dataset_name="ds")
    meta = json.loads((workdir / "a" / "ds" / "metadata.json").read_text())
    assert meta["status"] == "failed" and "boom" in meta["error"]
    assert len(meta["completed_batches"]) == 2
    done = mill.create(config, num_records=60, dataset_name="ds", resume=gm.ResumeMode.ALWAYS)
    assert done.count_records() == 60


def test_if_possible_continues_the_matching_earlier_fresh_start(workdir: Path) -> None:
    mill = _mill(workdir / "a")
    first = mill.create(_config(workdir), num_records=30, dataset_name="ds")
    changed = _config(workdir)
    changed.columns[3] = gm.ExpressionColumn(name="label", expr="{{ category }}/{{ price }}")
    with pytest.warns(UserWarning, match="starting fresh in"):
        fresh = mill.create(changed, num_records=30, dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
    with pytest.warns(UserWarning, match=f"continuing the matching earlier run in {fresh.artifact_path}"):
        again = mill.create(changed, num_records=50, dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
    assert again.artifact_path == fresh.artifact_path and again.generated_rows == 20
    back = mill.create(_config(workdir), num_records=30, dataset_name="ds", resume=gm.ResumeMode.IF_POSSIBLE)
    assert back.artifact_path == first.artifact_path and back.generated_rows == 0
