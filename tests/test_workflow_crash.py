"""A workflow cut off by SIGKILL mid-stage resumes from its completed batches; a second
concurrent run of the same workflow is refused.

The interrupted run is a real subprocess killed with SIGKILL, not a hand-edited file. Its
slow stage uses a custom column importable by name from this module in both processes, so
both compute the same fingerprint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.errors import LockedError
from gristmill.storage.atomic import sha256_file
from gristmill.storage.metadata import DatasetMetadata

SLOW_ENV = "GRISTMILL_TEST_SLOW_SECONDS"
TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"
SCRIPT = """
import sys
from pathlib import Path
import test_workflow_crash as t
t.build(t.make_mill(Path(sys.argv[1]))).run(resume="if-possible", rerun_from="slow")
"""


def slow_tag(frame: pd.DataFrame) -> list[str]:
    """Batch-mode custom column; sleeps per batch when the environment asks for it."""
    time.sleep(float(os.environ.get(SLOW_ENV, "0")))
    return [f"tag{n}" for n in frame["n"]]


def make_mill(root: Path) -> gm.Mill:
    return gm.Mill(root, run_config=gm.RunConfig(batch_size=2, show_progress=False))


def build(mill: gm.Mill) -> Any:
    wf = mill.compose_workflow("crash")
    wf.add_stage("base", gm.ConfigBuilder().add_column(
        name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 1000, "integer": True}),
        num_records=20)
    wf.add_stage("slow", gm.ConfigBuilder().add_column(
        name="tag", column_type="custom", function="test_workflow_crash:slow_tag", mode="batch", reads=["n"],
        version="1"))
    wf.add_stage("after", gm.ConfigBuilder().add_column(name="label", column_type="expression", expr="{{ tag }}!"))
    return wf


def _partial_batches(stage_dir: Path) -> list[dict[str, Any]] | None:
    """Completed batches of a dataset that is running again after being cleared, else None."""
    try:  # metadata.json plus the batches committed to its journal since
        meta = DatasetMetadata.load(stage_dir / "metadata.json")
    except gm.ArtifactError:
        return None
    batches = [b.model_dump() for b in meta.completed_batches]
    return batches if meta.status == "running" and len(batches) >= 2 else None


def _start_and_wait(root: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, SLOW_ENV: "0.3", "PYTHONPATH": os.pathsep.join([str(SRC_DIR), str(TESTS_DIR)])}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _partial_batches(root / "crash" / "stage-1-slow") is None:
        if proc.poll() is not None:
            raise AssertionError(f"the workflow subprocess ended early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the workflow subprocess made no progress")
        time.sleep(0.05)
    return proc


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.delenv(SLOW_ENV, raising=False)


def test_sigkilled_stage_resumes_from_its_batches_and_second_run_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    build(make_mill(root)).run()  # complete once, so the later stage has a prior record
    proc = _start_and_wait(root)
    try:
        with pytest.raises(LockedError, match=r"locked by another run \(pid "):
            build(make_mill(root)).run(resume="if-possible")
        assert proc.poll() is None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]

    stage_dir = root / "crash" / "stage-1-slow"
    done = [b.model_dump() for b in DatasetMetadata.load(stage_dir / "metadata.json").completed_batches]
    kept = {b["file"]: (sha256_file(stage_dir / b["file"]), (stage_dir / b["file"]).stat().st_mtime_ns)
            for b in done}
    workflow_meta = json.loads((root / "crash" / "workflow-metadata.json").read_text())
    assert [s["status"] for s in workflow_meta["stages"]] == ["completed", "running", "completed"]

    wf = build(make_mill(root))
    plan = wf.plan(resume="always")
    assert [s.action.value for s in plan.stages] == ["reuse", "resume", "run"]
    assert plan["slow"].reason.startswith(f"{len(done)} of 10 batches done")
    assert plan["after"].reason == "upstream 'slow' resumed" and plan.always_blockers() == []

    out = build(make_mill(root)).run(resume="always")
    for file, (digest, mtime) in kept.items():
        assert (sha256_file(stage_dir / file), (stage_dir / file).stat().st_mtime_ns) == (digest, mtime)
    assert [s.status.value for s in out.metadata.stages] == ["completed"] * 3

    clean = build(make_mill(tmp_path / "clean")).run()
    for name in ("base", "slow", "after"):
        assert out.load_stage_output(name).equals(clean.load_stage_output(name))
    assert out.count_records() == 20 and out.load_dataset()["n"].is_unique


def test_always_resumes_a_first_run_killed_before_its_last_stage(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    proc = _start_and_wait(root)  # the very first run: 'after' has never been reached
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]
    workflow_meta = json.loads((root / "crash" / "workflow-metadata.json").read_text())
    assert [s["name"] for s in workflow_meta["stages"]] == ["base", "slow"]
    assert workflow_meta["planned_stages"] == ["base", "slow", "after"]

    plan = build(make_mill(root)).plan(resume="always")
    assert [s.action.value for s in plan.stages] == ["reuse", "resume", "run"]
    assert plan["after"].reason == "upstream 'slow' resumed" and plan.always_blockers() == []
    out = build(make_mill(root)).run(resume="always")
    clean = build(make_mill(tmp_path / "clean")).run()
    assert out.load_dataset().equals(clean.load_dataset())

    # A stage added since the last run is still a change of its own.
    wf = build(make_mill(root))
    wf.add_stage("extra", gm.ConfigBuilder().add_column(name="more", column_type="expression", expr="{{ label }}?"))
    assert wf.plan(resume="always").always_blockers() == ["stage 'extra' would run: new stage (no prior run)"]
