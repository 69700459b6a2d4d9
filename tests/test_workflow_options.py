"""Stage options (one ``StageOptions`` model), run options given as a single name, and a stage
whose own dataset metadata is corrupt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import gristmill as gm
from gristmill.errors import ResumeError, WorkflowError
from gristmill.workflow.spec import StageSpec
from gristmill.workflow.stage import StageOptions

BATCH = 4


@pytest.fixture
def mill(tmp_path: Path) -> gm.Mill:
    return gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=BATCH, show_progress=False))


def _workflow(mill: gm.Mill) -> Any:
    wf = mill.compose_workflow("wf")
    wf.add_stage("base", gm.ConfigBuilder().add_column(
        name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 100, "integer": True}),
        num_records=6)
    wf.add_stage("double", gm.ConfigBuilder().add_column(name="d", column_type="expression", expr="{{ n * 2 }}"))
    wf.add_stage("label", gm.ConfigBuilder().add_column(name="label", column_type="expression", expr="#{{ n }}"))
    return wf


# -- StageOptions -----------------------------------------------------------------------------
def test_stage_options_document_every_field_and_forbid_unknown_ones() -> None:
    assert all(field.description for field in StageOptions.model_fields.values())
    with pytest.raises(ValidationError, match="extra"):
        StageOptions.model_validate({"num_record": 3})


def test_stage_spec_is_name_config_and_the_stage_options() -> None:
    assert set(StageSpec.model_fields) == {"name", "config", *StageOptions.model_fields}
    spec = StageSpec.model_validate({"name": "s", "config": "c.yaml", "num_records": 3, "sampling_strategy": "shuffle",
                                     "selection_strategy": {"selection_type": "index_range", "start": 0, "end": 2}})
    options = spec.options()
    assert isinstance(options, StageOptions) and options.num_records == 3
    assert options.selection_strategy == gm.IndexRange(start=0, end=2)


def test_add_stage_builds_stage_options(mill: gm.Mill) -> None:
    wf = _workflow(mill)
    wf.add_stage("kept", gm.ConfigBuilder().add_column(name="k", column_type="expression", expr="{{ n }}"),
                 output_processors=[{"name": "p", "processor_type": "drop_columns", "column_names": ["d"]}],
                 sampling_strategy="shuffle", allow_empty=True)
    options = wf.stages[-1].options
    assert isinstance(options, StageOptions)
    assert options.sampling_strategy is gm.SamplingStrategy.SHUFFLE and options.allow_empty
    assert [p.name for p in options.output_processors] == ["p"]


def test_bad_options_name_the_stage(mill: gm.Mill) -> None:
    wf = _workflow(mill)
    config = gm.ConfigBuilder().add_column(name="k", column_type="expression", expr="{{ n }}")
    with pytest.raises(WorkflowError, match="stage 'x': num_records must be a positive integer, got True"):
        wf.add_stage("x", config, num_records=True)
    with pytest.raises(WorkflowError, match="stage 'x': .*sampling_strategy"):
        wf.add_stage("x", config, sampling_strategy="sideways")
    with pytest.raises(WorkflowError, match="stage 'x': on_success must be a callable"):
        wf.add_stage("x", config, on_success=42)  # type: ignore[arg-type]


# -- a single name for targets and rerun_from -----------------------------------------------
def test_a_single_target_name_is_one_target(mill: gm.Mill) -> None:
    wf = _workflow(mill)
    plan = wf.plan(resume="if-possible", targets="double")
    assert [s.name for s in plan.stages] == ["base", "double"] and plan.not_targeted == ("label",)
    out = wf.run(resume="if-possible", targets="base")
    assert list(out) == ["base"]
    again = wf.run(resume="if-possible", targets=["double", "base"])
    assert [s.action.value for s in again.plan.stages] == ["reuse", "run"]


def test_rerun_from_a_single_name(mill: gm.Mill) -> None:
    wf = _workflow(mill)
    wf.run(resume="if-possible")
    out = wf.run(resume="if-possible", rerun_from="double")
    assert [s.action.value for s in out.plan.stages] == ["reuse", "run", "run"]


def test_bad_run_options_fail_before_anything_is_written(mill: gm.Mill) -> None:
    wf = _workflow(mill)
    with pytest.raises(WorkflowError, match="rerun_from needs resume=if-possible"):
        wf.run(resume="never", rerun_from="double")
    with pytest.raises(WorkflowError, match="targets names unknown stage 'nope'"):
        wf.run(resume="if-possible", targets="nope")
    with pytest.raises(WorkflowError, match="comes after the last target"):
        wf.run(resume="if-possible", targets="base", rerun_from="label")
    assert not mill.artifact_path.exists()


# -- a stage whose own dataset metadata is corrupt ------------------------------------------
def _corrupt_stage_metadata(out: Any, stage: str) -> Path:
    path = out[stage].artifact_path / "metadata.json"
    path.write_text("{ not json")
    return path


def test_corrupt_stage_metadata_reruns_the_stage_under_if_possible(mill: gm.Mill) -> None:
    first = _workflow(mill).run(resume="if-possible")
    path = _corrupt_stage_metadata(first, "double")
    plan = _workflow(mill).plan(resume="if-possible")
    assert [s.action.value for s in plan.stages] == ["reuse", "run", "run"]
    assert str(path) in plan["double"].reason and "resume=never" not in plan["double"].reason
    out = _workflow(mill).run(resume="if-possible")
    assert out["double"].load_dataset()["d"].tolist() == first["double"].load_dataset()["d"].tolist()
    assert out["double"].metadata.actual_rows == 6


def test_corrupt_stage_metadata_is_refused_under_always(mill: gm.Mill) -> None:
    first = _workflow(mill).run(resume="if-possible")
    path = _corrupt_stage_metadata(first, "label")
    with pytest.raises(ResumeError, match=f"stage 'label' would run: {path}"):
        _workflow(mill).run(resume="always")


def test_run_resumes_if_possible_by_default(mill: gm.Mill) -> None:
    _workflow(mill).run()
    out = _workflow(mill).run()
    assert [s.action.value for s in out.plan.stages] == ["reuse", "reuse", "reuse"]
    assert out.workflow_dir == mill.artifact_path / "wf"
