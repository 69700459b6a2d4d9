"""A Ray driver killed with SIGKILL mid-run: a rerun with resume=if-possible builds exactly the
batches the journal does not hold, and the result equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gristmill as gm

pytest.importorskip("ray")

FUNCTIONS = textwrap.dedent("""
    import time

    def slow(row):
        time.sleep(0.05)
        return row["n"] * 2
""")

DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import gristmill as gm
    from config import build

    gm.allow_modules("drvkill_fns")
    run = gm.RunConfig(batch_size=5, executor="ray", show_progress=False)
    with gm.Mill(sys.argv[2], run_config=run) as mill:
        mill.create(build(), num_records=200, dataset_name="d")
""")

CONFIG = textwrap.dedent("""
    import gristmill as gm

    def build():
        return (gm.ConfigBuilder()
                .add_column(name="n", column_type="sampler", sampler_type="uniform",
                            params={"low": 0, "high": 1000, "integer": True})
                .add_column(name="twice", column_type="custom", function="drvkill_fns:slow", reads=["n"])
                .build())
""")


def _journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_a_sigkilled_ray_driver_resumes_with_exactly_the_missing_batches(tmp_path: Path) -> None:
    (tmp_path / "drvkill_fns.py").write_text(FUNCTIONS)
    (tmp_path / "config.py").write_text(CONFIG)
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "out"
    # Its own session, so the SIGKILL takes the driver and the local cluster it started.
    proc = subprocess.Popen([sys.executable, "driver.py", str(tmp_path), str(out)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    journal = out / "d" / "batches.journal"
    deadline = time.monotonic() + 120
    try:
        while _journal_lines(journal) < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the driver ended early: {proc.stderr.read().decode() if proc.stderr else ''}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    committed = _journal_lines(journal)
    assert 6 <= committed < 40  # killed mid-run, with some batches durable

    sys.path.insert(0, str(tmp_path))
    try:
        gm.allow_modules("drvkill_fns")
        from config import build  # type: ignore[import-not-found]

        local = gm.RunConfig(batch_size=5, show_progress=False)
        with gm.Mill(out, run_config=local) as mill:
            resumed = mill.create(build(), num_records=200, dataset_name="d")
        with gm.Mill(tmp_path / "reference", run_config=local) as mill:
            reference = mill.create(build(), num_records=200, dataset_name="d")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("config", None)
    assert resumed.artifact_path == out / "d"  # continued in place, not a fresh copy
    assert resumed.generated_rows <= 200 - 5 * 6  # only what the journal did not hold was built
    for a, b in zip(resumed.batch_files(), reference.batch_files(), strict=True):
        assert pq.read_table(a).equals(pq.read_table(b))
