"""The Mill's seams: services instead of private members, the executor seam, stable default seeds,
and a ConfigBuilder accepted wherever a config is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gristmill as gm
from gristmill.engine.dataset_plan import DatasetRequest, dataset_identity, observe_dataset, plan_dataset
from gristmill.engine.dataset_run import DatasetJob, DatasetRun
from gristmill.engine.executor import BatchJob
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import BatchRecord, BatchSpec
from gristmill.testing import FunctionModel


def _builder(prompt: str = "Describe item {{ n }}.") -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 0, "high": 1000, "integer": True})
            .add_column(name="text", column_type="llm_text", model_alias="default", prompt=prompt))


def _mill(tmp_path: Path, fm: FunctionModel, **run: object) -> gm.Mill:
    return gm.Mill(tmp_path, model_providers=[fm.provider()], model_configs=[fm.model_config()],
                   clients={fm.name: fm}, run_config=gm.RunConfig(batch_size=5, show_progress=False, **run))


def test_default_seed_is_derived_from_the_name_so_a_changed_prompt_pays_only_its_column(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: f"answer to {request.prompt}")
    cfg = _builder().add_column(name="summary", column_type="llm_text", model_alias="default",
                                prompt="Summarise {{ text }}.")
    with _mill(tmp_path, fm) as mill:
        first = mill.create(cfg, num_records=20, dataset_name="items", resume="if-possible")
        assert len(fm.calls) == 40
        changed = _builder().add_column(name="summary", column_type="llm_text", model_alias="default",
                                        prompt="Summarise briefly: {{ text }}.")
        with pytest.warns(UserWarning, match="prompt of column 'summary' changed"):
            second = mill.create(changed, num_records=20, dataset_name="items", resume="if-possible")
    # The sampled values and so the first column's prompts are the same: only 'summary' is paid again.
    assert len(fm.calls) == 60
    assert first.load_dataset()["n"].tolist() == second.load_dataset()["n"].tolist()
    assert first.metadata.run_seed == second.metadata.run_seed


def test_an_explicit_seed_still_wins(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: "ok")
    with _mill(tmp_path, fm) as named, _mill(tmp_path / "b", fm, seed=1234) as seeded:
        a = named.create(_builder(), num_records=5, dataset_name="items")
        b = seeded.create(_builder(), num_records=5, dataset_name="items")
    assert b.metadata.run_seed == 1234 and a.metadata.run_seed != 1234


def test_create_preview_validate_and_plan_accept_a_builder(tmp_path: Path) -> None:
    fm = FunctionModel(lambda request: "ok")
    with _mill(tmp_path, fm) as mill:
        mill.validate(_builder())
        assert len(mill.preview(_builder(), num_records=3)) == 3
        assert mill.create(_builder(), num_records=3, dataset_name="b").count_records() == 3
        assert mill.plan_dataset(_builder(), num_records=3, dataset_name="b").action.value == "reuse"
        with pytest.raises(gm.ConfigError, match="expected a DatasetConfig or ConfigBuilder, got dict"):
            mill.validate({"columns": []})  # type: ignore[arg-type]


class ReversedExecutor:
    """Builds batches last to first: a stand-in for a distributed executor whose batches finish
    out of order. It goes through the same seam as the local one."""

    name = "reversed"

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        for done, spec in enumerate(reversed(specs)):
            if done == self.stop_after:
                raise KeyboardInterrupt
            commit(job.build_and_write(spec))


def _sampler_config() -> gm.DatasetConfig:
    return gm.ConfigBuilder().add_column(name="x", column_type="sampler", sampler_type="uniform",
                                         params={"low": 0, "high": 1}).build()


def _run_with(mill: gm.Mill, root: Path, executor: ReversedExecutor | None) -> gm.DatasetResults:
    cfg = _sampler_config()
    identity = dataset_identity(cfg)
    observation = observe_dataset(root, identity, look_for_earlier=False)
    mode = gm.ResumeMode.IF_POSSIBLE
    decision = plan_dataset(observation, identity, DatasetRequest(23, mill.run_config, mode))
    job = DatasetJob(config=cfg, layout=DatasetLayout(root), dataset_name=root.name, num_records=23,
                     run_config=mill.run_config.model_copy(update={"seed": 9}), identity=identity)
    meta = DatasetRun(job, mill.services, executor=executor).execute(observation.main.metadata
                                                                      if decision.continues else None)
    return gm.DatasetResults(root, meta)


def test_batches_finished_out_of_order_resume_exactly_the_missing_ones(tmp_path: Path) -> None:
    mill = gm.Mill(tmp_path, run_config=gm.RunConfig(batch_size=5, show_progress=False))
    with pytest.raises(KeyboardInterrupt):
        _run_with(mill, tmp_path / "out-of-order", ReversedExecutor(stop_after=2))
    stored = gm.DatasetResults(tmp_path / "out-of-order").metadata
    assert [b.index for b in stored.completed_batches] == [3, 4]  # the last two: 15-19 and 20-22
    assert [s.index for s in stored.missing_batches()] == [0, 1, 2]
    resumed = _run_with(mill, tmp_path / "out-of-order", None)
    reference = _run_with(mill, tmp_path / "in-order", None)
    assert resumed.metadata.status.value == "completed" and resumed.count_records() == 23
    assert [b.index for b in resumed.metadata.completed_batches] == [0, 1, 2, 3, 4]
    for a, b in zip(resumed.metadata.completed_batches, reference.metadata.completed_batches, strict=True):
        assert pq.read_table(tmp_path / "out-of-order" / a.file).equals(pq.read_table(tmp_path / "in-order" / b.file))


def _garbled_cache(tmp_path: Path) -> tuple[FunctionModel, gm.Mill]:
    fm = FunctionModel(lambda request: "ok")
    mill = _mill(tmp_path, fm)
    mill.create(_builder(), num_records=5, dataset_name="items")
    (tmp_path / "items" / "response-cache.sqlite").write_bytes(b"not a database" * 100)
    return fm, mill


def test_a_damaged_cache_is_moved_aside_under_if_possible(tmp_path: Path) -> None:
    fm, mill = _garbled_cache(tmp_path)
    with mill, pytest.warns(UserWarning, match="moved it to response-cache.sqlite.damaged"):
        grown = mill.create(_builder(), num_records=10, dataset_name="items", resume="if-possible")
    assert grown.count_records() == 10 and len(fm.calls) == 10  # only the new rows were asked for
    assert [p.name for p in (tmp_path / "items").glob("response-cache.sqlite.damaged*")]


def test_a_damaged_cache_is_an_artifact_error_under_always(tmp_path: Path) -> None:
    _, mill = _garbled_cache(tmp_path)
    with mill, pytest.raises(gm.ArtifactError, match="response-cache.sqlite is not a usable response cache"):
        mill.create(_builder(), num_records=10, dataset_name="items", resume="always")
    assert (tmp_path / "items" / "response-cache.sqlite").read_bytes().startswith(b"not a database")
