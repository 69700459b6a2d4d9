"""The dataset planner, table-driven: stored state x request x mode -> action and reason.

``plan_dataset`` is pure, so these cases build observations by hand; the last tests check
``observe_dataset`` and ``Mill.plan_dataset`` against real directories.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.run import ResumeMode
from gristmill.engine.dataset_plan import (
    DatasetAction,
    DatasetIdentity,
    DatasetObservation,
    DatasetRequest,
    StoredRun,
    dataset_identity,
    observe_dataset,
    plan_dataset,
)
from gristmill.storage.metadata import BatchRecord, BatchSpec, DatasetMetadata, DatasetStatus

ROOT = Path("/data/people")
SIBLING = Path("/data/people_20260101-000000")
EARLIER = Path("/data/people_20250101-000000")
IDENTITY = DatasetIdentity("fp-1", {"columns": {"x": {"expr": "a"}}}, None)
CHANGED = DatasetIdentity("fp-2", {"columns": {"x": {"expr": "b"}}}, None)


def meta(*, rows: int, target: int, status: DatasetStatus = DatasetStatus.COMPLETED, fingerprint: str = "fp-1",
         batch_size: int = 10, run_seed: int = 5, planned: int | None = None) -> DatasetMetadata:
    batches = [BatchRecord(index=i, file=f"parquet-files/batch_{i:05d}.parquet", rows=min(batch_size, rows - o),
                           bytes=1, sha256="x", row_offset=o) for i, o in enumerate(range(0, rows, batch_size))]
    m = DatasetMetadata(gristmill_version="t", dataset_name="people", fingerprint=fingerprint, fingerprint_version=1,
                        fingerprint_components={"columns": {"x": {"expr": "a"}}}, run_seed=run_seed,
                        batch_size=batch_size, target_rows=target, status=status, completed_batches=batches)
    m.plan_rows(planned if planned is not None else target)
    return m


def observed(run: StoredRun, *earlier: StoredRun) -> DatasetObservation:
    return DatasetObservation(run, earlier, free_sibling=None if run.empty else SIBLING)


EMPTY = StoredRun(ROOT, empty=True)
COMPLETE = StoredRun(ROOT, metadata=meta(rows=30, target=30), has_cache=True)
PARTIAL = StoredRun(ROOT, metadata=meta(rows=20, target=30, status=DatasetStatus.FAILED, planned=30))
FOREIGN = StoredRun(ROOT, problem="/data/people is not empty but has no metadata.json")
CHANGED_RUN = StoredRun(ROOT, metadata=meta(rows=30, target=30, fingerprint="fp-0"), has_cache=True)

CASES = [
    # (description, observation, identity, rows, mode, action, path, words in reason or warning)
    ("empty dir starts there", observed(EMPTY), IDENTITY, 30, ResumeMode.IF_POSSIBLE, DatasetAction.FRESH, ROOT,
     "no earlier run"),
    ("empty dir under never", observed(EMPTY), IDENTITY, 30, ResumeMode.NEVER, DatasetAction.FRESH, ROOT, ""),
    ("complete and same rows is reused", observed(COMPLETE), IDENTITY, 30, ResumeMode.IF_POSSIBLE,
     DatasetAction.REUSE, ROOT, "complete with 30 rows"),
    ("complete under always is reused", observed(COMPLETE), IDENTITY, 30, ResumeMode.ALWAYS, DatasetAction.REUSE,
     ROOT, ""),
    ("more rows grow it", observed(COMPLETE), IDENTITY, 45, ResumeMode.IF_POSSIBLE, DatasetAction.GROW, ROOT,
     "grows from 30 to 45"),
    ("a cut-off run resumes", observed(PARTIAL), IDENTITY, 30, ResumeMode.IF_POSSIBLE, DatasetAction.RESUME, ROOT,
     "2 of 3 batches"),
    ("never never continues", observed(COMPLETE), IDENTITY, 30, ResumeMode.NEVER, DatasetAction.FRESH_SIBLING,
     SIBLING, "already holds data"),
    ("a changed config starts fresh beside it", observed(COMPLETE), CHANGED, 30, ResumeMode.IF_POSSIBLE,
     DatasetAction.FRESH_SIBLING, SIBLING, "expr of column 'x' changed"),
    ("fewer rows than held starts fresh", observed(COMPLETE), IDENTITY, 20, ResumeMode.IF_POSSIBLE,
     DatasetAction.FRESH_SIBLING, SIBLING, "more than the 20 requested"),
    ("foreign dir starts fresh beside it", observed(FOREIGN), IDENTITY, 30, ResumeMode.IF_POSSIBLE,
     DatasetAction.FRESH_SIBLING, SIBLING, "no metadata.json"),
    ("an earlier matching fresh start is continued", observed(CHANGED_RUN, StoredRun(EARLIER, metadata=meta(
        rows=30, target=30))), IDENTITY, 30, ResumeMode.IF_POSSIBLE, DatasetAction.REUSE, EARLIER,
     "continuing the matching earlier run"),
]


@pytest.mark.parametrize(("description", "observation", "identity", "rows", "mode", "action", "path", "words"),
                         CASES, ids=[c[0] for c in CASES])
def test_plan_dataset(description: str, observation: DatasetObservation, identity: DatasetIdentity, rows: int,
                      mode: ResumeMode, action: DatasetAction, path: Path, words: str) -> None:
    decision = plan_dataset(observation, identity, DatasetRequest(rows, gm.RunConfig(batch_size=10), mode))
    assert (decision.action, decision.path) == (action, path)
    assert words in f"{decision.reason} {decision.warning or ''}"


def test_a_fresh_start_imports_the_caches_of_the_runs_it_looked_at() -> None:
    decision = plan_dataset(observed(CHANGED_RUN), IDENTITY, DatasetRequest(30, gm.RunConfig(batch_size=10)))
    assert decision.import_caches == (ROOT / "response-cache.sqlite",)


@pytest.mark.parametrize(("observation", "identity", "error", "words"), [
    (observed(EMPTY), IDENTITY, gm.ResumeError, "holds no dataset to resume"),
    (observed(COMPLETE), CHANGED, gm.ResumeError, "expr of column 'x' changed"),
    (observed(FOREIGN), IDENTITY, gm.ArtifactError, "no metadata.json"),
])
def test_always_refuses_what_it_cannot_continue(observation: DatasetObservation, identity: DatasetIdentity,
                                                error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        plan_dataset(observation, identity, DatasetRequest(30, gm.RunConfig(batch_size=10), ResumeMode.ALWAYS))


@pytest.mark.parametrize(("run_config", "words"), [
    (gm.RunConfig(batch_size=7), "batch_size is 7, the stored run used 10"),
    (gm.RunConfig(batch_size=10, seed=6), "seed is 6, the stored run used 5"),
])
def test_run_options_that_decide_rows_must_match(run_config: gm.RunConfig, words: str) -> None:
    decision = plan_dataset(observed(COMPLETE), IDENTITY, DatasetRequest(30, run_config))
    assert decision.action is DatasetAction.FRESH_SIBLING and words in decision.reason


def test_missing_batches_are_a_set_so_batches_may_finish_out_of_order() -> None:
    m = meta(rows=0, target=50)
    for index in (3, 0, 1):
        spec = m.planned_batches[index]
        m.commit_batch(BatchRecord(index=index, file=f"b{index}", rows=spec.rows, bytes=1, sha256="x",
                                   row_offset=spec.row_offset))
    assert [b.index for b in m.completed_batches] == [0, 1, 3]
    assert m.missing_batches() == [BatchSpec(index=2, row_offset=20, rows=10), BatchSpec(index=4, row_offset=40,
                                                                                          rows=10)]


def test_growth_appends_after_a_partial_last_batch() -> None:
    m = meta(rows=25, target=25)  # batches of 10, 10, 5
    m.plan_rows(40)
    assert m.missing_batches() == [BatchSpec(index=3, row_offset=25, rows=10), BatchSpec(index=4, row_offset=35,
                                                                                          rows=5)]


def test_observe_and_plan_real_directories(tmp_path: Path) -> None:
    cfg = gm.ConfigBuilder().add_column(name="x", column_type="sampler", sampler_type="uniform",
                                        params={"low": 0, "high": 1}).build()
    mill = gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=4, show_progress=False))
    first = mill.plan_dataset(cfg, num_records=10, dataset_name="d")
    assert first.action is DatasetAction.FRESH
    mill.create(cfg, num_records=10, dataset_name="d", resume="if-possible")
    assert mill.plan_dataset(cfg, num_records=10, dataset_name="d").action is DatasetAction.REUSE
    grow = mill.plan_dataset(cfg, num_records=15, dataset_name="d")
    assert (grow.action, grow.batches_missing) == (DatasetAction.GROW, 2)
    observation = observe_dataset(tmp_path / "d", dataset_identity(cfg))
    assert observation.main.metadata is not None and observation.main.metadata.actual_rows == 10

