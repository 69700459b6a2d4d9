"""Nothing silently wrong: stray files, same-size edits, tampered records, orphan temp files,
moved-aside (never deleted) directories, and clear errors for locks and long names."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.errors import ArtifactError, ConfigError, LockedError, ResumeError
from gristmill.storage.layout import LOCK_FILE, fresh_sibling
from gristmill.storage.lock import DirectoryLock
from gristmill.workflow import StageAction
from gristmill.workflow.spec import load_workflow_spec

BATCH = 4


@pytest.fixture
def mill(tmp_path: Path) -> gm.Mill:
    return gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=BATCH, show_progress=False))


def people() -> gm.ConfigBuilder:
    return gm.ConfigBuilder().add_column(name="n", column_type="sampler", sampler_type="uniform",
                                         params={"low": 1, "high": 10**6, "integer": True})


def doubled() -> gm.ConfigBuilder:
    return gm.ConfigBuilder().add_column(name="d", column_type="expression", expr="{{ n * 2 }}", dtype="int")


def two_stages(mill: gm.Mill, middle: gm.ConfigBuilder | None = None) -> Any:
    wf = mill.compose_workflow("wf")
    wf.add_stage("base", people(), num_records=10)
    wf.add_stage("double", middle or doubled())
    return wf


def actions(results: Any) -> list[str]:
    return [s.action.value for s in results.plan.stages]


def flip_middle_byte(path: Path) -> None:
    """A same-size change inside the data pages (the footer still parses)."""
    import pyarrow.parquet as pq

    column = pq.read_metadata(path).row_group(0).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + column.total_compressed_size - 1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert pq.read_metadata(path).num_rows > 0


def edit_workflow_metadata(root: Path, change: Any) -> None:
    path = root / "wf" / "workflow-metadata.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


# -- 1. stray files ----------------------------------------------------------------------------
def test_stray_parquet_files_in_upstream_directory_are_not_read(mill: gm.Mill) -> None:
    two_stages(mill).run()
    parquet = mill.artifact_path / "wf" / "stage-0-base" / "parquet-files"
    (parquet / "batch_00001 - Copy.parquet").write_bytes((parquet / "batch_00000.parquet").read_bytes())
    (parquet / "backup").mkdir()
    (parquet / "backup" / "batch_00000.parquet").write_bytes((parquet / "batch_00002.parquet").read_bytes())
    out = two_stages(mill).run(rerun_from="double")
    assert actions(out) == ["reuse", "run"]
    base, double = out.load_stage_output("base"), out.load_stage_output("double")
    assert len(base) == 10
    assert double["n"].tolist() == base["n"].tolist()


def test_resumed_stage_records_only_its_own_batch_files(mill: gm.Mill) -> None:
    two_stages(mill).run()
    parquet = mill.artifact_path / "wf" / "stage-1-double" / "parquet-files"
    (parquet / "batch_00000 - Copy.parquet").write_bytes((parquet / "batch_00000.parquet").read_bytes())

    def fail_double(meta: dict[str, Any]) -> None:
        meta["stages"][1]["status"] = "failed"
    edit_workflow_metadata(mill.artifact_path, fail_double)
    out = two_stages(mill).run()
    assert actions(out) == ["reuse", "resume"]
    record = next(r for r in out.metadata.stages if r.name == "double")
    assert [Path(f.file).name for f in record.output_files] == [f"batch_0000{i}.parquet" for i in range(3)]
    assert out.count_records() == 10


# -- 2. same-size byte changes -----------------------------------------------------------------
def test_same_size_change_in_a_batch_file_is_not_reused(mill: gm.Mill) -> None:
    mill.create(people(), num_records=12, dataset_name="ds")
    flip_middle_byte(mill.artifact_path / "ds" / "parquet-files" / "batch_00001.parquet")
    with pytest.raises(ArtifactError, match="batch_00001.parquet"):
        mill.create(people(), num_records=12, dataset_name="ds", resume="always")
    with pytest.warns(UserWarning, match="batch_00001.parquet"):
        res = mill.create(people(), num_records=12, dataset_name="ds", resume="if-possible")
    assert res.artifact_path.name != "ds"


def test_same_size_change_in_a_stage_output_reruns_the_stage(mill: gm.Mill) -> None:
    two_stages(mill).run()
    flip_middle_byte(mill.artifact_path / "wf" / "stage-0-base" / "parquet-files" / "batch_00000.parquet")
    plan = two_stages(mill).plan()
    assert [s.action for s in plan.stages] == [StageAction.RUN, StageAction.RUN]
    assert "altered" in plan.stages[0].reason
    with pytest.raises(ResumeError, match="altered"):
        two_stages(mill).run(resume="always")


def test_metadata_without_checksums_still_resumes(mill: gm.Mill) -> None:
    """Metadata written before crc32 was recorded: size, footer and the recorded sha256 decide."""
    mill.create(people(), num_records=12, dataset_name="ds")
    path = mill.artifact_path / "ds" / "metadata.json"
    meta = json.loads(path.read_text())
    for batch in meta["completed_batches"]:
        batch.pop("crc32", None)
    path.write_text(json.dumps(meta))
    res = mill.create(people(), num_records=12, dataset_name="ds", resume="always")
    assert res.generated_rows == 0


# -- 3. never delete ---------------------------------------------------------------------------
def test_unreadable_workflow_metadata_moves_stage_directories_aside(mill: gm.Mill) -> None:
    two_stages(mill).run()
    root = mill.artifact_path / "wf"
    (root / "stage-0-base" / "my-notes.txt").write_text("keep me")
    (root / "workflow-metadata.json").write_text("{not json")
    with pytest.warns(UserWarning, match=r"\.trash"):
        two_stages(mill).run()
    kept = list((root / ".trash").rglob("my-notes.txt"))
    assert len(kept) == 1 and kept[0].read_text() == "keep me"
    assert list((root / ".trash").glob("workflow-metadata.json_*"))


def test_rerun_stage_directory_is_moved_to_trash(mill: gm.Mill) -> None:
    two_stages(mill).run()
    root = mill.artifact_path / "wf"
    (root / "stage-1-double" / "my-notes.txt").write_text("keep me")
    changed = gm.ConfigBuilder().add_column(name="d", column_type="expression", expr="{{ n * 3 }}", dtype="int")
    out = two_stages(mill, changed).run()
    assert actions(out) == ["reuse", "run"]
    assert [p.read_text() for p in (root / ".trash").rglob("my-notes.txt")] == ["keep me"]
    assert not (root / "stage-1-double" / "my-notes.txt").exists()


# -- 5. tampered metadata ----------------------------------------------------------------------
def test_stage_record_claiming_more_rows_than_its_files_hold_is_not_trusted(mill: gm.Mill) -> None:
    two_stages(mill).run()

    def inflate(meta: dict[str, Any]) -> None:
        meta["stages"][0]["output_rows"] = 20
        meta["stages"][0]["output_files"][0]["rows"] += 10
    edit_workflow_metadata(mill.artifact_path, inflate)
    out = two_stages(mill).run()
    assert actions(out)[0] == "run"
    assert out.count_records() == 10


def test_stage_record_whose_total_disagrees_with_its_files_is_not_trusted(mill: gm.Mill) -> None:
    two_stages(mill).run()

    def inflate(meta: dict[str, Any]) -> None:
        meta["stages"][0]["output_rows"] = 20
    edit_workflow_metadata(mill.artifact_path, inflate)
    plan = two_stages(mill).plan()
    assert plan.stages[0].action is StageAction.RUN


def test_batch_record_naming_another_batch_file_is_refused(mill: gm.Mill) -> None:
    mill.create(people(), num_records=12, dataset_name="ds")
    path = mill.artifact_path / "ds" / "metadata.json"
    meta = json.loads(path.read_text())
    first = meta["completed_batches"][0]
    meta["completed_batches"][1].update({k: first[k] for k in ("file", "rows", "bytes", "sha256")})
    if "crc32" in first:
        meta["completed_batches"][1]["crc32"] = first["crc32"]
    path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="batch_00000.parquet"):
        mill.create(people(), num_records=12, dataset_name="ds", resume="always")


# -- 6. orphan temp files ----------------------------------------------------------------------
ORPHAN = ".batch_00001.parquet.999999.deadbeef.tmp"


def test_orphan_temp_files_are_removed_under_the_lock_and_nothing_else(mill: gm.Mill) -> None:
    mill.create(people(), num_records=12, dataset_name="ds")
    root = mill.artifact_path / "ds"
    orphans = [root / "parquet-files" / ORPHAN, root / ".metadata.json.999999.0123abcd.tmp"]
    keep = [root / "parquet-files" / ".notes.tmp", root / ".metadata.json.tmp", root / "user.999999.deadbeef.tmp",
            root / f".metadata.json.{os.getpid()}.0123abcd.tmp"]
    for path in orphans + keep:
        path.write_bytes(b"x")
    mill.create(people(), num_records=12, dataset_name="ds", resume="if-possible")
    assert [p.exists() for p in orphans] == [False, False]
    assert all(p.exists() for p in keep)


def test_orphan_temp_files_in_a_workflow_directory_are_removed(mill: gm.Mill) -> None:
    two_stages(mill).run()
    root = mill.artifact_path / "wf"
    orphan = root / ".workflow-metadata.json.999999.0123abcd.tmp"
    orphan.write_bytes(b"x")
    two_stages(mill).run()
    assert not orphan.exists()


# -- 15/16: clear errors ----------------------------------------------------------------------
def test_unwritable_directory_is_one_clear_artifact_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import filelock

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / LOCK_FILE))
    monkeypatch.setattr(filelock.UnixFileLock, "_acquire", refuse)
    with pytest.raises(ArtifactError, match="cannot lock .*Permission denied"):
        DirectoryLock(tmp_path).acquire()


def test_lock_held_in_this_process_says_so(tmp_path: Path) -> None:
    with DirectoryLock(tmp_path), pytest.raises(LockedError, match="this process"):
        DirectoryLock(tmp_path).acquire()


def test_lock_holder_written_late_is_still_named(tmp_path: Path) -> None:
    import filelock

    raw = filelock.FileLock(str(tmp_path / LOCK_FILE), timeout=0)
    raw.acquire()
    holder = tmp_path / f"{LOCK_FILE}.json"

    def write_later() -> None:
        time.sleep(0.05)
        holder.write_text(json.dumps({"pid": 4242, "host": "elsewhere", "started_at": "now"}))
    thread = threading.Thread(target=write_later)
    thread.start()
    try:
        with pytest.raises(LockedError, match="pid 4242 on elsewhere"):
            DirectoryLock(tmp_path).acquire()
    finally:
        thread.join()
        raw.release()


def test_name_too_long_for_a_timestamped_sibling_is_a_config_error(tmp_path: Path) -> None:
    long_dir = tmp_path / ("x" * 250)
    long_dir.mkdir()
    with pytest.raises(ConfigError, match="255"):
        fresh_sibling(long_dir)


def test_long_dataset_name_fails_before_any_work(mill: gm.Mill) -> None:
    name = "x" * 250
    with pytest.raises(ConfigError, match="255"):
        mill.create(people(), num_records=4, dataset_name=name)
    assert not (mill.artifact_path / name).exists()


def test_missing_model_providers_file_is_a_config_error(tmp_path: Path) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text("name: w\nmodel_providers: nope.yaml\nstages:\n  - {name: a, config: {columns: []}}\n")
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_workflow_spec(spec)


def test_damaged_batch_file_load_is_an_artifact_error(tmp_path: Path) -> None:
    from gristmill.storage.tables import read_parquet_checked

    path = tmp_path / "batch_00000.parquet"
    pd.DataFrame({"a": range(100)}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ArtifactError, match="batch_00000.parquet"):
        read_parquet_checked(path)


def test_reused_stage_whose_dataset_names_one_batch_file_twice_reruns(mill: gm.Mill) -> None:
    two_stages(mill).run()
    path = mill.artifact_path / "wf" / "stage-0-base" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["completed_batches"][1]["file"] = meta["completed_batches"][0]["file"]
    path.write_text(json.dumps(meta))
    plan = two_stages(mill).plan()
    assert plan.stages[0].action is StageAction.RUN
    assert "inconsistent" in plan.stages[0].reason
