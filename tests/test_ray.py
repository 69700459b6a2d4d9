"""The Ray executor: same files as the local one, batches committed as a set in any order, a
worker SIGKILLed mid-batch retried to the same result, and clear errors before any work."""

from __future__ import annotations

import builtins
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.engine.dataset_plan import dataset_identity
from gristmill.engine.dataset_run import DatasetJob, DatasetRun
from gristmill.engine.executor import BatchJob
from gristmill.engine.ray_executor import RayExecutor
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import BatchRecord, BatchSpec

ray = pytest.importorskip("ray")

BATCH_SIZE = 5  # ray_slowfns.BATCH_SIZE: its functions tell batches apart by row index
ROWS = 20


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray instance for the module: starting one costs seconds."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _allow_helpers() -> None:
    gm.allow_modules("ray_slowfns")


def _config(function: str, *, marker: Path | None = None) -> gm.DatasetConfig:
    seed = pd.DataFrame({"row": range(ROWS), "marker": [str(marker or "")] * ROWS})
    return (gm.ConfigBuilder()
            .with_seed_dataset(seed)
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 1000, "integer": True})
            .add_column(name="label", column_type="expression", expr="item {{ n }} of row {{ row }}")
            .add_column(name="value", column_type="custom", function=f"ray_slowfns:{function}",
                        reads=["row", "n", "label", "marker"])
            .build())


def _create(root: Path, config: gm.DatasetConfig, executor: str) -> gm.DatasetResults:
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False, executor=executor)
    with gm.Mill(root, run_config=run_config) as mill:
        return mill.create(config, num_records=ROWS, dataset_name="data")


def _assert_same_batches(a: gm.DatasetResults, b: gm.DatasetResults) -> None:
    assert [r.index for r in a.metadata.completed_batches] == [r.index for r in b.metadata.completed_batches]
    for x, y in zip(a.metadata.completed_batches, b.metadata.completed_batches, strict=True):
        assert pq.read_table(a.artifact_path / x.file).equals(pq.read_table(b.artifact_path / y.file))
        assert (x.rows, x.sha256) == (y.rows, y.sha256)


def test_ray_writes_the_same_batches_as_the_local_executor(tmp_path: Path, ray_session: None) -> None:
    config = _config("mixed")
    local = _create(tmp_path / "local", config, "local")
    distributed = _create(tmp_path / "ray", config, "ray")
    assert distributed.metadata.status.value == "completed" and distributed.count_records() == ROWS
    _assert_same_batches(local, distributed)


def _dag(mill: gm.Mill) -> gm.CompositeWorkflow:
    """A root stage, two branches reading it, and a merge stage joining both branches."""
    wf = mill.compose_workflow("dag")
    wf.add_stage("base", _config("mixed"), num_records=ROWS)
    for branch in ("left", "right"):
        wf.add_stage(branch, gm.ConfigBuilder().add_column(
            name=f"{branch}_value", column_type="custom", function="ray_slowfns:mixed",
            reads=["row", "n", "label", "marker"]).build(), depends_on=["base"])
    wf.add_stage("merge", gm.ConfigBuilder().add_column(name="both", column_type="expression",
                                                        expr="{{ left_value }}/{{ right.0.right_value }}").build(),
                 depends_on=["left", "right"], seed_from="left", side_inputs=["right"])
    return wf


def test_a_dag_workflow_runs_its_branches_on_ray_to_the_local_result(tmp_path: Path, ray_session: None) -> None:
    """Both branches of a DAG run on the cluster (concurrently, sharing it) and every stage's files
    equal those the local executor writes."""
    results = {}
    for executor in ("local", "ray"):
        run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False, executor=executor)
        with gm.Mill(tmp_path / executor, run_config=run_config) as mill:
            results[executor] = _dag(mill).run()
    for stage in ("base", "left", "right", "merge"):
        local, distributed = results["local"][stage], results["ray"][stage]
        assert isinstance(local, gm.DatasetResults) and isinstance(distributed, gm.DatasetResults)
        _assert_same_batches(local, distributed)
    assert results["ray"].count_records() == ROWS


class _CommitOrder:
    """The Ray executor, noting the order in which the driver commits batches."""

    name = "ray"

    def __init__(self, inner: RayExecutor) -> None:
        self.inner, self.order = inner, list[int]()

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        def noted(record: BatchRecord) -> None:
            self.order.append(record.index)
            commit(record)

        self.inner.run(specs, job, noted)

    def close(self) -> None:
        self.inner.close()


def test_batches_finish_out_of_order_and_are_recorded_as_a_set(tmp_path: Path, ray_session: None) -> None:
    config = _config("first_batch_last")
    executor = _CommitOrder(RayExecutor.connect(None))
    root = tmp_path / "data"
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False)
    job = DatasetJob(config=config, layout=DatasetLayout(root), dataset_name="data", num_records=ROWS,
                     run_config=run_config, identity=dataset_identity(config))
    with gm.Mill(tmp_path, run_config=run_config) as mill:
        meta = DatasetRun(job, mill.services, executor=executor).execute(None)
    assert executor.order[0] != 0 and sorted(executor.order) == [0, 1, 2, 3]  # batch 0 sleeps 1.5 s
    assert [b.index for b in meta.completed_batches] == [0, 1, 2, 3]
    stored = gm.DatasetResults(root).metadata
    assert [b.index for b in stored.completed_batches] == [0, 1, 2, 3] and stored.missing_batches() == []
    assert gm.DatasetResults(root).load_dataset()["value"].tolist() == [2 * i for i in range(ROWS)]


class _StopAfter(_CommitOrder):
    """The Ray executor with a driver interrupted (Ctrl-C) after ``commits`` batches committed."""

    def __init__(self, inner: RayExecutor, commits: int) -> None:
        super().__init__(inner)
        self.commits = commits

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        def noted(record: BatchRecord) -> None:
            if len(self.order) == self.commits:
                raise KeyboardInterrupt
            self.order.append(record.index)
            commit(record)

        self.inner.run(specs, job, noted)


def test_an_interrupted_driver_resumes_with_exactly_the_missing_batches(tmp_path: Path, ray_session: None) -> None:
    config = _config("mixed")
    root = tmp_path / "ray" / "data"
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False)
    job = DatasetJob(config=config, layout=DatasetLayout(root), dataset_name="data", num_records=ROWS,
                     run_config=run_config, identity=dataset_identity(config))
    stopped = _StopAfter(RayExecutor.connect(None), commits=2)
    with gm.Mill(tmp_path, run_config=run_config) as mill, pytest.raises(KeyboardInterrupt):
        DatasetRun(job, mill.services, executor=stopped).execute(None)
    stored = gm.DatasetResults(root).metadata
    assert sorted(b.index for b in stored.completed_batches) == sorted(stopped.order)
    assert len(stored.missing_batches()) == 2
    resumed = _create(tmp_path / "ray", config, "ray")
    assert resumed.generated_rows == 2 * BATCH_SIZE  # only the two missing batches were built
    _assert_same_batches(_create(tmp_path / "local", config, "local"), resumed)


def test_a_worker_killed_mid_batch_is_retried_to_the_same_result(tmp_path: Path, ray_session: None) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    config = _config("dies_once_in_batch_2", marker=markers)
    (markers / "killed-once").write_text("local run: do not kill the test process")
    local = _create(tmp_path / "local", config, "local")
    (markers / "killed-once").unlink()
    distributed = _create(tmp_path / "ray", config, "ray")
    assert (markers / "killed-once").read_text().isdigit()  # a worker's pid: it was killed
    assert distributed.metadata.status.value == "completed"
    _assert_same_batches(local, distributed)


def test_without_ray_installed_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(gm.ConfigError, match=r"pip install 'gristmill\[ray\]'"):
        gm.Mill(tmp_path, run_config=gm.RunConfig(executor="ray"))
    assert not any(tmp_path.iterdir())


def test_an_unreachable_cluster_is_a_config_error_before_any_batch(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_config = gm.RunConfig(executor="ray", ray_address=f"127.0.0.1:{port}", show_progress=False)
    with gm.Mill(tmp_path, run_config=run_config) as mill:
        with pytest.raises(gm.ConfigError, match=f"no Ray cluster answers at ray_address '127.0.0.1:{port}'"):
            mill.create(_config("mixed"), num_records=ROWS, dataset_name="data")
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("metadata.json"))
