"""LLM columns under the Ray executor: the same files as the local executor, one limit for the
whole cluster (no 429 from a server capping at max_parallel_requests though two workers run),
answers cached through per-batch shards (a rerun pays nothing; a killed worker or an interrupted
driver re-pays at most the requests in flight), the run's usage counted on the driver (a failed
or cancelled batch's too), and the embedded llama.cpp model refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.engine.dataset_plan import dataset_identity
from gristmill.engine.dataset_run import DatasetJob, DatasetRun
from gristmill.engine.executor import BatchJob
from gristmill.engine.ray_executor import RayExecutor
from gristmill.llm.cache import ResponseCache
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import BatchRecord, BatchSpec
from gristmill.testing import FunctionModel, LLMTestServer, provider_and_model

ray = pytest.importorskip("ray")

BATCH_SIZE = 10
ROWS = 40
PARALLEL = 4  # the model's max_parallel_requests, and the server's cap in the limit test


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray instance with two workers for the module: starting one costs seconds."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture()
def server() -> Iterator[LLMTestServer]:
    with LLMTestServer(latency=0.05) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _allow_helpers() -> None:
    gm.allow_modules("ray_slowfns")


def _config(marker: Path, *, kill_row: int = -1) -> gm.DatasetConfig:
    seed = pd.DataFrame({"row": range(ROWS), "marker": [str(marker)] * ROWS, "kill_row": [kill_row] * ROWS,
                         "kill_after": [0.12] * ROWS})
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
              "required": ["name", "size"]}
    return (gm.ConfigBuilder()
            .with_seed_dataset(seed)
            .add_column(name="text", column_type="llm_text", prompt="Describe item {{ row }}.")
            .add_column(name="item", column_type="llm_structured", prompt="An item like {{ text }}.",
                        output_format=schema)
            .add_column(name="k", column_type="custom", function="ray_slowfns:dies_soon_once",
                        reads=["row", "marker", "kill_row", "kill_after"])
            .add_column(name="summary", column_type="llm_text", prompt="Summarise {{ text }} ({{ k }}).")
            .build())


def _create(root: Path, url: str, config: gm.DatasetConfig, executor: str) -> gm.DatasetResults:
    provider, model = provider_and_model(url, max_parallel_requests=PARALLEL)
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False, executor=executor)
    with gm.Mill(root, model_providers=[provider], model_configs=[model], run_config=run_config) as mill:
        return mill.create(config, num_records=ROWS, dataset_name="data")


def _paid(server: LLMTestServer) -> int:
    stats = server.stats()
    return int(stats["requests"] - stats["rate_limited"])


def _assert_same_files(a: gm.DatasetResults, b: gm.DatasetResults) -> None:
    assert [r.index for r in a.metadata.completed_batches] == [r.index for r in b.metadata.completed_batches]
    for x, y in zip(a.metadata.completed_batches, b.metadata.completed_batches, strict=True):
        assert pq.read_table(a.artifact_path / x.file).equals(pq.read_table(b.artifact_path / y.file))


def test_same_files_one_cluster_wide_limit_usage_and_a_free_rerun(
        tmp_path: Path, server: LLMTestServer, ray_session: None) -> None:
    config = _config(tmp_path)
    local = _create(tmp_path / "local", server.url, config, "local")
    paid_locally = _paid(server)
    assert paid_locally == 3 * ROWS
    server.reset_stats()
    server.configure(max_concurrent=PARALLEL)  # one request more than the limit would be a 429
    distributed = _create(tmp_path / "ray", server.url, config, "ray")
    stats = server.stats()
    assert stats["rate_limited"] == 0 and stats["max_in_flight"] <= PARALLEL
    assert _paid(server) == paid_locally
    _assert_same_files(local, distributed)
    assert distributed.load_dataset()["item"].notna().all()
    # Usage comes back with every batch: the same counters as in one process.
    for key in ("requests", "input_tokens", "output_tokens"):
        assert distributed.run_usage["default"][key] == local.run_usage["default"][key]
    assert distributed.metadata.usage["default"]["requests"] == paid_locally
    # Every answer reached the main cache; the shards are gone.
    root = distributed.artifact_path
    assert not list(root.rglob("cache-shards/*.sqlite*"))
    with ResponseCache(root / "response-cache.sqlite", mode="readonly") as cache:
        assert cache.stats()["entries"] == 3 * ROWS
    server.reset_stats()
    again = _create(tmp_path / "ray", server.url, config, "ray")
    assert server.stats()["requests"] == 0 and again.generated_rows == 0


def test_a_worker_killed_mid_batch_repays_at_most_its_requests_in_flight(
        tmp_path: Path, server: LLMTestServer, ray_session: None) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    config = _config(markers, kill_row=BATCH_SIZE)  # batch 1, as its 'summary' requests go out
    (markers / "killed-once").write_text("reference run: do not kill the test process")
    local = _create(tmp_path / "local", server.url, config, "local")
    reference = _paid(server)
    (markers / "killed-once").unlink()
    server.reset_stats()
    distributed = _create(tmp_path / "ray", server.url, config, "ray")
    assert (markers / "killed-once").read_text().isdigit()  # a worker's pid: it was killed
    assert distributed.metadata.status.value == "completed"
    _assert_same_files(local, distributed)
    repaid = _paid(server) - reference
    assert 0 <= repaid <= PARALLEL, f"re-paid {repaid} requests after the kill"
    assert server.stats()["rate_limited"] == 0  # the dead worker's slots came back, none leaked


class _StopAfterOne:
    """The Ray executor with a driver interrupted (Ctrl-C) as the second batch comes back."""

    name = "ray"

    def __init__(self, inner: RayExecutor) -> None:
        self.inner, self.commits = inner, 0

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        def noted(record: BatchRecord) -> None:
            if self.commits == 1:
                raise KeyboardInterrupt  # this batch's shard is left behind, never merged
            self.commits += 1
            commit(record)

        self.inner.run(specs, job, noted)

    def close(self) -> None:
        self.inner.close()


def test_an_interrupted_driver_leaves_shards_that_the_next_run_merges(
        tmp_path: Path, server: LLMTestServer, ray_session: None) -> None:
    config = _config(tmp_path)
    _create(tmp_path / "local", server.url, config, "local")
    reference = _paid(server)
    server.reset_stats()
    provider, model = provider_and_model(server.url, max_parallel_requests=PARALLEL)
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False)
    root = tmp_path / "ray" / "data"
    job = DatasetJob(config=config, layout=DatasetLayout(root), dataset_name="data", num_records=ROWS,
                     run_config=run_config, identity=dataset_identity(config))
    executor = RayExecutor.connect(None)
    try:
        with gm.Mill(tmp_path / "ray", model_providers=[provider], model_configs=[model],
                     run_config=run_config) as mill, pytest.raises(KeyboardInterrupt):
            DatasetRun(job, mill.services, executor=_StopAfterOne(executor)).execute(None)
    finally:
        executor.close()
    assert list(root.glob("cache-shards/batch_*.sqlite"))  # answers of batches never committed
    # The requests of the batch whose commit was interrupted and of the cancelled ones are counted
    # (a cancelled request may be counted as it is sent, before the server sees it).
    interrupted = gm.DatasetResults(root).metadata
    sent = server.stats()["requests"]
    assert sent <= interrupted.usage["default"]["requests"] <= sent + PARALLEL
    resumed = _create(tmp_path / "ray", server.url, config, "ray")
    assert resumed.metadata.status.value == "completed" and not list(root.glob("cache-shards/*.sqlite*"))
    repaid = _paid(server) - reference
    # The interrupted driver cancels the running tasks and waits until they have stopped; a worker
    # sees the cancel within 50 ms and drops only its requests in flight, at most PARALLEL across
    # the cluster (the throttle's slots). Every answer that arrived is in its batch's shard, which
    # the next run merges. (Before, a cancelled task went on with its whole batch while the next
    # run merged and deleted its shard: 30 or 60 of 120 requests re-paid on warm workers.)
    assert 0 <= repaid <= PARALLEL, f"re-paid {repaid} requests after the interrupted driver"


def test_a_failed_batch_still_counts_the_requests_it_paid(
        tmp_path: Path, server: LLMTestServer, ray_session: None) -> None:
    seed = pd.DataFrame({"row": range(BATCH_SIZE), "fail_row": [3] * BATCH_SIZE})
    config = (gm.ConfigBuilder()
              .with_seed_dataset(seed)
              .add_column(name="text", column_type="llm_text", prompt="Describe item {{ row }}.")
              .add_column(name="k", column_type="custom", function="ray_slowfns:fails_on_fail_row", mode="batch",
                          reads=["row", "fail_row", "text"])
              .build())
    provider, model = provider_and_model(server.url, max_parallel_requests=PARALLEL)
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False, executor="ray")
    with gm.Mill(tmp_path, model_providers=[provider], model_configs=[model], run_config=run_config) as mill:
        with pytest.raises(gm.GenerationError, match="planned failure"):
            mill.create(config, num_records=BATCH_SIZE, dataset_name="data")
    failed = gm.DatasetResults(tmp_path / "data").metadata
    assert failed.status.value == "failed"
    assert failed.usage["default"]["requests"] == server.stats()["requests"] == BATCH_SIZE


def test_the_embedded_local_model_is_refused_unless_a_client_of_the_callers_answers_it(
        tmp_path: Path, ray_session: None) -> None:
    config = (gm.ConfigBuilder()
              .add_column(name="n", column_type="sampler", sampler_type="uniform",
                          params={"low": 0, "high": 9, "integer": True})
              .add_column(name="text", column_type="llm_text", prompt="Say {{ n }}.")
              .build())
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False, executor="ray")
    with gm.Mill(tmp_path / "embedded", run_config=run_config) as mill:
        with pytest.raises(gm.ConfigError, match="embedded local model.*every Ray worker would load a copy"):
            mill.create(config, num_records=BATCH_SIZE, dataset_name="data")
    assert not list((tmp_path / "embedded").rglob("*.parquet"))
    answers = FunctionModel(lambda request: "fine", name="local")
    with gm.Mill(tmp_path / "given", run_config=run_config, clients={"local": answers}) as mill:
        given = mill.create(config, num_records=BATCH_SIZE, dataset_name="data")
    assert given.load_dataset()["text"].tolist() == ["fine"] * BATCH_SIZE


def test_a_column_that_calls_tools_is_refused_before_any_work(tmp_path: Path, ray_session: None,
                                                              server: LLMTestServer) -> None:
    from gristmill.config.tools import ToolConfig, ToolProvider

    config = (gm.ConfigBuilder()
              .add_column(name="n", column_type="sampler", sampler_type="uniform",
                          params={"low": 0, "high": 9, "integer": True})
              .add_column(name="text", column_type="llm_text", prompt="Say {{ n }}.", tool_alias="research")
              .build())
    provider, model = provider_and_model(server.url)
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=7, show_progress=False, executor="ray")
    with gm.Mill(tmp_path, run_config=run_config, model_providers=[provider], model_configs=[model],
                 tool_providers=[ToolProvider(name="t", command="true")],
                 tool_configs=[ToolConfig(alias="research", providers=["t"])]) as mill:
        with pytest.raises(gm.ConfigError, match="column 'text' calls tools.*local executor only"):
            mill.create(config, num_records=BATCH_SIZE, dataset_name="data")
    assert not list(tmp_path.rglob("*.parquet")) and server.stats()["requests"] == 0
