"""Damaged stored state: every case ends in a clear gristmill error or correct data, never wrong data.

A completed dataset (``Mill.create``) and a completed two-stage workflow are built once (LLM
columns answered by an in-process ``FunctionModel``, deterministic per prompt), copied per case,
damaged, and run again with ``resume="if-possible"`` and ``resume="always"``. Accepted outcomes:

- a ``GristmillError`` whose message names the damaged file (or its directory);
- data equal to the undamaged reference (reused, repaired, or a fresh start: a fresh start in a
  new directory must say so in a warning).

In every case each parquet file present before the call must still exist afterwards (moved aside
is fine, deleted is not). Cases that fail today are ``xfail(strict=True)`` naming the issue item
being fixed; when a fix lands the case XPASSes, fails the strict mark, and the mark is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.testing import ChatRequest, FunctionModel

ROWS, BATCH = 40, 10
DATASET = "d"
WORKFLOW = "wf"
STAGES = ("base", "derived")
MODES = ("if-possible", "always")


def _answer(request: ChatRequest) -> str:
    return "answer " + hashlib.sha256(request.prompt.encode()).hexdigest()[:12]


def _mill(root: Path) -> gm.Mill:
    fm = FunctionModel(_answer)
    return gm.Mill(root, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                   clients={fm.name: fm}, run_config=gm.RunConfig(batch_size=BATCH, show_progress=False))


def _dataset_config() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 10**6, "integer": True})
            .add_column(name="label", column_type="expression", expr="item {{ n }}")
            .add_column(name="text", column_type="llm_text", prompt="Describe {{ label }}."))


def _workflow(mill: gm.Mill) -> Any:
    wf = mill.compose_workflow(WORKFLOW)
    wf.add_stage("base", _dataset_config(), num_records=ROWS)
    wf.add_stage("derived", gm.ConfigBuilder()
                 .add_column(name="summary", column_type="llm_text", prompt="Summarise: {{ text }}")
                 .add_column(name="tag", column_type="expression", expr="{{ label }}!"))
    return wf


def run_dataset(root: Path, mode: str) -> tuple[dict[str, pd.DataFrame], Path | None]:
    """The dataset's rows, and the directory of a fresh start (None when it continued in place)."""
    with _mill(root) as mill:
        res = mill.create(_dataset_config(), num_records=ROWS, dataset_name=DATASET, resume=mode)
        moved = res.artifact_path if res.artifact_path != root / DATASET else None
        return {DATASET: res.load_dataset()}, moved


def run_workflow(root: Path, mode: str, **options: Any) -> tuple[dict[str, pd.DataFrame], Path | None]:
    with _mill(root) as mill:
        out = _workflow(mill).run(resume=mode, **options)
        moved = out.workflow_dir if out.workflow_dir != root / WORKFLOW else None
        return {name: out.load_stage_output(name) for name in STAGES}, moved


@dataclass(frozen=True)
class Built:
    root: Path
    outputs: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    dataset_root = tmp_path_factory.mktemp("damage-dataset")
    workflow_root = tmp_path_factory.mktemp("damage-workflow")
    return {"dataset": Built(dataset_root, run_dataset(dataset_root, "never")[0]),
            "workflow": Built(workflow_root, run_workflow(workflow_root, "never")[0])}


# ---- the damage ------------------------------------------------------------------------------

def _data_dir(root: Path, target: str) -> Path:
    return root / DATASET if target == "dataset" else root / WORKFLOW / "stage-0-base"


def _batch(root: Path, target: str, index: int = 1) -> Path:
    return _data_dir(root, target) / "parquet-files" / f"batch_{index:05d}.parquet"


def truncate_batch(root: Path, target: str) -> tuple[str, ...]:
    path = _batch(root, target)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return (path.name,)


def flip_byte(root: Path, target: str) -> tuple[str, ...]:
    """One byte changed, same size, at the first offset from the middle that changes what is read."""
    path = _batch(root, target)
    data = path.read_bytes()
    original = pq.read_table(path)
    for offset in range(len(data) // 2, len(data) - 8):
        damaged = data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]
        path.write_bytes(damaged)
        try:
            if not pq.read_table(path).equals(original):
                return (path.name,)
        except Exception:  # noqa: BLE001 - unreadable is damage enough
            return (path.name,)
    raise AssertionError("no byte changes what the batch file reads")


def delete_batch(root: Path, target: str) -> tuple[str, ...]:
    path = _batch(root, target)
    path.unlink()
    return (path.name,)


def stray_parquet(root: Path, target: str) -> tuple[str, ...]:
    """A valid parquet file nobody recorded (as a crash between write and commit would leave)."""
    stray = _batch(root, target, ROWS // BATCH)
    shutil.copyfile(_batch(root, target, 0), stray)
    return (stray.name,)


def orphan_temp(root: Path, target: str) -> tuple[str, ...]:
    """The hidden temp file of a batch write cut off before its rename (a dead pid in its name)."""
    orphan = _batch(root, target, ROWS // BATCH)
    orphan = orphan.with_name(f".{orphan.name}.999999.deadbeef.tmp")
    orphan.write_bytes(_batch(root, target, 0).read_bytes()[:300])
    return (orphan.name,)


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def tamper_rows(root: Path, target: str) -> tuple[str, ...]:
    def edit(meta: dict[str, Any]) -> None:
        meta["completed_batches"][1]["rows"] -= 3
    _edit_json(_data_dir(root, target) / "metadata.json", edit)
    return "metadata.json", "batch_00000.parquet", "batch_00001.parquet"


def tamper_file(root: Path, target: str) -> tuple[str, ...]:
    """Batch 1's record points at batch 0's file, with batch 0's size: only the checksum tells."""
    def edit(meta: dict[str, Any]) -> None:
        first, second = meta["completed_batches"][0], meta["completed_batches"][1]
        second["file"], second["bytes"] = first["file"], first["bytes"]
    _edit_json(_data_dir(root, target) / "metadata.json", edit)
    return "metadata.json", "batch_00000.parquet", "batch_00001.parquet"


def tamper_workflow_rows(root: Path, target: str) -> tuple[str, ...]:
    def edit(meta: dict[str, Any]) -> None:
        meta["stages"][0]["output_files"][1]["rows"] -= 3
    _edit_json(root / WORKFLOW / "workflow-metadata.json", edit)
    return "workflow-metadata.json", "batch_00000.parquet", "batch_00001.parquet"


def tamper_workflow_file(root: Path, target: str) -> tuple[str, ...]:
    def edit(meta: dict[str, Any]) -> None:
        files = meta["stages"][0]["output_files"]
        files[1]["file"], files[1]["bytes"] = files[0]["file"], files[0]["bytes"]
    _edit_json(root / WORKFLOW / "workflow-metadata.json", edit)
    return "workflow-metadata.json", "batch_00000.parquet", "batch_00001.parquet"


def read_only(root: Path, target: str) -> tuple[str, ...]:
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not restrict root")
    directory = root / DATASET if target == "dataset" else root / WORKFLOW
    for path in [directory, *directory.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    return (str(directory),)


def stale_lock(root: Path, target: str) -> tuple[str, ...]:
    """The lock and holder files of a process that died holding them (its flock died with it)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    directory = root / DATASET if target == "dataset" else root / WORKFLOW
    for lock_dir in (directory, _data_dir(root, target)):
        (lock_dir / ".gristmill.lock").write_bytes(b"")
        (lock_dir / ".gristmill.lock.json").write_text(json.dumps(
            {"pid": int(dead.stdout), "host": "localhost", "started_at": "2024-01-01T00:00:00+00:00"}))
    return (".gristmill.lock",)


def garble_cache(root: Path, target: str) -> tuple[str, ...]:
    path = (root / DATASET if target == "dataset" else root / WORKFLOW) / "response-cache.sqlite"
    assert path.exists()
    path.write_bytes(b"\x00garbled\xff" * 512)
    return (path.name,)


def garble_workflow_metadata(root: Path, target: str) -> tuple[str, ...]:
    path = root / WORKFLOW / "workflow-metadata.json"
    path.write_bytes(path.read_bytes()[:200] + b"\x00\xff{{garbled")
    return (path.name,)


def garble_journal_tail(root: Path, target: str) -> tuple[str, ...]:
    """A garbage line then a torn one, after the batches metadata.json already holds."""
    path = _data_dir(root, target) / "batches.journal"
    with path.open("ab") as journal:
        journal.write(b"\x00\xffnot json at all\n")
        journal.write(b'{"index": 4, "file": "parquet-files/batch_0')
    return (path.name,)


# ---- the table -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    damage: Callable[[Path, str], tuple[str, ...]]
    targets: tuple[str, ...] = ("dataset", "workflow")
    options: tuple[tuple[str, Any], ...] = ()


CASES = [
    Case("truncate-batch", truncate_batch),
    Case("flip-byte", flip_byte),
    Case("delete-batch", delete_batch),
    Case("stray-parquet", stray_parquet),
    # The stray file lies in the hand-off directory of a stage that must read it again.
    Case("stray-parquet-handoff", stray_parquet, ("workflow",), (("rerun_from", "derived"),)),
    Case("orphan-temp-file", orphan_temp),
    Case("tamper-rows", tamper_rows),
    Case("tamper-file", tamper_file),
    Case("tamper-workflow-rows", tamper_workflow_rows, ("workflow",)),
    Case("tamper-workflow-file", tamper_workflow_file, ("workflow",)),
    Case("read-only", read_only),
    Case("stale-lock", stale_lock),
    Case("garble-cache", garble_cache),
    Case("garble-workflow-metadata", garble_workflow_metadata, ("workflow",)),
    Case("garble-journal-tail", garble_journal_tail),
]

# (target, case, mode) -> the issue item whose fix makes it pass; empty since those fixes landed
# (checksums on reuse, never deleting, tampered records, damaged cache). A new damage case that
# fails today goes here with its reason, strict, so the fix flips it.
XFAIL: dict[tuple[str, str, str], str] = {}


def _params() -> Iterator[Any]:
    for case in CASES:
        for target in case.targets:
            for mode in MODES:
                marks = []
                reason = XFAIL.get((target, case.name, mode))
                if reason is not None:
                    marks.append(pytest.mark.xfail(strict=True, reason=reason))
                yield pytest.param(case, target, mode, id=f"{target}-{case.name}-{mode}", marks=marks)


def _parquet_digests(root: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.parquet") if p.is_file()}


def _restore_permissions(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)


@pytest.mark.parametrize(("case", "target", "mode"), list(_params()))
def test_damaged_state(case: Case, target: str, mode: str, built: dict[str, Built], tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(built[target].root, root)
    damaged = case.damage(root, target)
    kept = _parquet_digests(root)
    run = run_dataset if target == "dataset" else run_workflow
    outputs: dict[str, pd.DataFrame] | None = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outputs, moved = run(root, mode, **dict(case.options))
            except gm.GristmillError as exc:
                assert any(name in str(exc) for name in damaged), \
                    f"{type(exc).__name__} names none of {damaged}: {exc}"
    finally:
        _restore_permissions(root)
    if outputs is not None:
        for name, frame in built[target].outputs.items():
            pd.testing.assert_frame_equal(outputs[name], frame, obj=f"{target} {name!r} after {case.name}")
        if moved is not None:
            assert [w for w in caught if issubclass(w.category, UserWarning)], f"fresh start in {moved}, no warning"
    assert kept <= _parquet_digests(root), "a parquet file present before the run was deleted"
