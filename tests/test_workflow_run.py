"""Composite workflows end to end, through real parquet files in ``tmp_path``."""

from __future__ import annotations

import json
import re
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gristmill as gm
from gristmill.errors import ResumeError, WorkflowError
from gristmill.workflow import SkippedStageResult, StageAction

BATCH = 4


@pytest.fixture
def mill(tmp_path: Path) -> gm.Mill:
    return gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=BATCH, show_progress=False))


def people() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 100, "integer": True})
            .add_column(name="tmp", column_type="expression", expr="t{{ n }}"))


def doubled(expr: str = "{{ n * 2 }}") -> gm.ConfigBuilder:
    return gm.ConfigBuilder().add_column(name="d", column_type="expression", expr=expr, dtype="int")


def labelled() -> gm.ConfigBuilder:
    return gm.ConfigBuilder().add_column(name="label", column_type="expression", expr="#{{ n }}")


def keep_even(stage_dir: Path) -> Path:
    frame = pd.read_parquet(stage_dir / "parquet-files")
    out = stage_dir / "even.parquet"
    frame[frame.n % 2 == 0].to_parquet(out)
    return out


def keep_none(stage_dir: Path) -> Path:
    frame = pd.read_parquet(stage_dir / "parquet-files")
    out = stage_dir / "none.parquet"
    frame.iloc[0:0].to_parquet(out)
    return out


def triple_outside(stage_dir: Path) -> Path:
    frame = pd.read_parquet(stage_dir / "parquet-files")
    out = stage_dir.parent.parent / "outside" / "tripled.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([frame] * 3, ignore_index=True).to_parquet(out)
    return out


def three_stages(mill: gm.Mill, *, name: str = "wf", middle: gm.ConfigBuilder | None = None,
                 **last: Any) -> Any:
    wf = mill.compose_workflow(name)
    wf.add_stage("base", people(), num_records=10)
    wf.add_stage("double", middle or doubled())
    wf.add_stage("label", labelled(), **last)
    return wf


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*.parquet"))}


def actions(results: Any) -> list[str]:
    return [s.action.value for s in results.plan.stages]


# ------------------------------------------------------------------------------------ hand-off

def test_linear_handoff_keeps_rows_in_order(mill: gm.Mill) -> None:
    out = three_stages(mill).run()
    base = out["base"].load_dataset()
    final = out.load_dataset()
    assert list(final.n) == list(base.n) and list(final.d) == [2 * n for n in base.n]
    assert list(final.label) == [f"#{n}" for n in base.n]
    assert out.count_records() == 10 and len(out) == 3 and list(out) == ["base", "double", "label"]
    meta = json.loads((out.workflow_dir / "workflow-metadata.json").read_text())
    assert meta["stages"][1]["seeded_from"] == "base"
    assert meta["stages"][1]["seed_path"] == "stage-0-base/parquet-files"


def test_callback_filters_and_expands(mill: gm.Mill, tmp_path: Path) -> None:
    wf = mill.compose_workflow("cb")
    wf.add_stage("base", people(), num_records=12, on_success=keep_even, on_success_version="1")
    wf.add_stage("grow", doubled(), on_success=triple_outside, on_success_version="1")
    wf.add_stage("label", labelled())
    out = wf.run()
    evens = out.load_stage_output("base")
    assert (evens.n % 2 == 0).all() and len(evens) < 12
    assert out.count_stage_records("grow") == 3 * len(evens) == out.count_records()
    # output from outside the stage directory is copied inside the workflow directory
    assert out.get_stage_output_path("grow") == out.workflow_dir / "stage-1-grow/callback-outputs/tripled.parquet"


def test_explicit_num_records_cycles_the_seed(mill: gm.Mill) -> None:
    out = three_stages(mill, num_records=25).run()
    base = list(out["base"].load_dataset().n)
    assert list(out.load_dataset().n) == (base * 3)[:25]


def test_dropped_columns_are_not_forwarded(mill: gm.Mill) -> None:
    wf = mill.compose_workflow("drops")
    wf.add_stage("base", people().add_processor(name="rm", processor_type="drop_columns", column_names=["tmp"]),
                 num_records=6)
    wf.add_stage("next", doubled(), output_processors=[
        {"name": "rm2", "processor_type": "drop_columns", "column_names": ["n"]}])
    out = wf.run()
    assert "tmp" not in out["next"].load_dataset().columns
    assert list(out.load_dataset().columns) == ["d"]


def test_processor_only_stage_hands_its_processor_output_on(mill: gm.Mill) -> None:
    wf = mill.compose_workflow("proc")
    wf.add_stage("base", people().add_processor(name="chat", processor_type="schema_transform",
                                                template={"q": "{{ tmp }}", "k": "{{ n }}"}),
                 num_records=5, output="processor:chat")
    wf.add_stage("use", gm.ConfigBuilder().add_column(name="x", column_type="expression", expr="{{ q }}!"))
    out = wf.run()
    base = out["base"].load_dataset()
    assert list(out.load_dataset().x) == [f"t{n}!" for n in base.n]
    assert set(out.load_stage_output("base").columns) == {"q", "k"}


def test_exports_equal_the_selected_output(mill: gm.Mill, tmp_path: Path) -> None:
    wf = mill.compose_workflow("exp")
    wf.add_stage("base", people(), num_records=9, on_success=keep_even, on_success_version="1")
    out = wf.run()
    exported = out.export(tmp_path / "final.jsonl")
    frame = pd.read_json(exported, lines=True)
    assert frame.to_dict("records") == out.load_stage_output("base").to_dict("records")
    parquet = out.export_stage("base", tmp_path / "base.parquet")
    assert pd.read_parquet(parquet).equals(out.load_dataset())


# ------------------------------------------------------------------------- empty outputs

def test_empty_output_without_allow_empty_fails(mill: gm.Mill) -> None:
    wf = mill.compose_workflow("empty")
    wf.add_stage("base", people(), num_records=4, on_success=keep_none, on_success_version="1")
    wf.add_stage("next", doubled())
    with pytest.raises(WorkflowError, match="stage 'base' produced no rows"):
        wf.run()
    meta = json.loads((wf.workflow_dir / "workflow-metadata.json").read_text())
    assert meta["stages"][0]["status"] == "failed"


def test_allow_empty_skips_later_stages_and_is_kept_on_resume(mill: gm.Mill) -> None:
    def build() -> Any:
        wf = mill.compose_workflow("empty")
        wf.add_stage("base", people(), num_records=4, on_success=keep_none, on_success_version="1",
                     allow_empty=True)
        return wf.add_stage("next", doubled()).add_stage("last", labelled())

    out = build().run()
    skipped = out["next"]
    assert isinstance(skipped, SkippedStageResult)
    assert (skipped.status, skipped.upstream_stage) == ("skipped_empty_upstream", "base")
    assert out["last"] == SkippedStageResult(stage="last", upstream_stage="base")
    assert out.count_records() == 0 and out.load_dataset().empty
    again = build().run(resume="if-possible")
    assert actions(again) == ["reuse", "skip_empty", "skip_empty"]
    statuses = [s.status.value for s in again.metadata.stages]
    assert statuses == ["completed_empty", "skipped_empty_upstream", "skipped_empty_upstream"]


# ---------------------------------------------------------------------------- add_stage checks

@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "-x", "x y", "é"])
def test_invalid_stage_names(mill: gm.Mill, name: str) -> None:
    with pytest.raises(WorkflowError, match="not usable as a directory name"):
        mill.compose_workflow("wf").add_stage(name, people(), num_records=1)
    assert not (mill.artifact_path / "wf").exists()


def test_add_stage_checks(mill: gm.Mill) -> None:
    wf = mill.compose_workflow("wf").add_stage("a", people(), num_records=3)
    with pytest.raises(WorkflowError, match="duplicate stage name 'a'"):
        wf.add_stage("a", people())
    with pytest.raises(WorkflowError, match="num_records must be a positive integer"):
        wf.add_stage("b", people(), num_records=0)
    with pytest.raises(WorkflowError, match="first stage: give num_records"):
        mill.compose_workflow("other").add_stage("a", people())
    with pytest.raises(WorkflowError, match="output must be 'final'"):
        wf.add_stage("b", people(), output="everything")
    with pytest.raises(WorkflowError, match="names no processor"):
        wf.add_stage("b", people(), output="processor:nope")
    with pytest.raises(WorkflowError, match="no on_success callback"):
        wf.add_stage("b", people(), on_success_version="1")
    assert [s.name for s in wf.stages] == ["a"]
    assert not mill.artifact_path.exists()


def test_duplicate_processor_names_are_rejected(mill: gm.Mill) -> None:
    drop = {"name": "p", "processor_type": "drop_columns", "column_names": ["n"]}
    wf = mill.compose_workflow("wf")
    with pytest.raises(WorkflowError, match="duplicate output processor name"):
        wf.add_stage("a", people(), num_records=2, output_processors=[drop, drop])
    config = people().add_processor(name="p", processor_type="drop_columns", column_names=["tmp"])
    with pytest.raises(WorkflowError, match="clash with processors of the stage config"):
        wf.add_stage("a", config, num_records=2, output_processors=[drop])


def test_builder_is_copied_at_add_time(mill: gm.Mill) -> None:
    builder = people()
    wf = mill.compose_workflow("wf").add_stage("a", builder, num_records=3)
    builder.add_column(name="late", column_type="expression", expr="late")
    config = labelled().build()
    wf.add_stage("b", config)
    config.columns.append(config.columns[-1].model_copy(update={"name": "later"}))
    out = wf.run()
    assert "late" not in out["a"].load_dataset().columns
    assert "later" not in out["b"].load_dataset().columns


def test_later_stage_own_seed_is_replaced_with_a_warning(mill: gm.Mill, tmp_path: Path) -> None:
    seed = tmp_path / "seed.parquet"
    pd.DataFrame({"n": [1000, 2000]}).to_parquet(seed)
    wf = mill.compose_workflow("wf").add_stage("a", people(), num_records=3)
    with pytest.warns(UserWarning, match="replaced by the output of the previous stage 'a'"):
        wf.add_stage("b", doubled().with_seed_dataset(str(seed)))
    assert all(n < 1000 for n in wf.run().load_dataset().n)


# --------------------------------------------------------------------- targets, rerun, overrides

def test_targets_materialise_only_up_to_the_target(mill: gm.Mill) -> None:
    out = three_stages(mill).run(targets=["double"])
    assert list(out) == ["base", "double"]
    assert not (out.workflow_dir / "stage-2-label").exists()
    rest = three_stages(mill).run(resume="if-possible")
    assert actions(rest) == ["reuse", "reuse", "run"]


def test_rerun_from_forces_that_stage_and_later(mill: gm.Mill) -> None:
    three_stages(mill).run()
    out = three_stages(mill).run(resume="if-possible", rerun_from="double")
    assert actions(out) == ["reuse", "run", "run"]
    with pytest.raises(WorkflowError, match="rerun_from needs resume"):
        three_stages(mill).run(resume="never", rerun_from="double")


def test_override_replaces_output_and_reruns_descendants(mill: gm.Mill, tmp_path: Path) -> None:
    first = three_stages(mill).run()
    approved = tmp_path / "approved.parquet"
    reviewed = first.load_stage_output("double").iloc[:3].assign(d=[-1, -2, -3])
    reviewed.to_parquet(approved)
    out = three_stages(mill).run(resume="if-possible", stage_output_overrides={"double": approved})
    assert actions(out) == ["reuse", "reuse", "run"]
    assert out.plan["label"].reason.startswith("output of upstream 'double' overridden")
    assert list(out.load_dataset().d) == [-1, -2, -3]
    assert out.get_stage_output_path("double") == approved.resolve()
    same = three_stages(mill).run(resume="if-possible", stage_output_overrides={"double": approved})
    assert actions(same) == ["reuse", "reuse", "reuse"]


def test_bad_override_is_rejected_before_any_work(mill: gm.Mill, tmp_path: Path) -> None:
    wf = three_stages(mill)
    with pytest.raises(WorkflowError, match="does not exist"):
        wf.run(stage_output_overrides={"double": tmp_path / "missing.parquet"})
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(WorkflowError, match="is not a parquet file"):
        wf.run(stage_output_overrides={"double": tmp_path / "notes.txt"})
    with pytest.raises(WorkflowError, match="unknown stage"):
        wf.run(stage_output_overrides={"nope": tmp_path / "notes.txt"})
    assert not (wf.workflow_dir / "stage-0-base").exists()


# ----------------------------------------------------------------------------------- reuse

def test_complete_workflow_is_reused_with_output_processors_untouched(mill: gm.Mill) -> None:
    st = {"name": "chat", "processor_type": "schema_transform", "template": {"text": "{{ label }}"}}
    first = three_stages(mill, output_processors=[st]).run()
    before = mtimes(first.workflow_dir)
    assert any("output-processors/chat" in k for k in before)
    out = three_stages(mill, output_processors=[st]).run(resume="always")
    assert actions(out) == ["reuse"] * 3 and mtimes(out.workflow_dir) == before
    assert list(out.load_dataset().columns) == ["text"]
    reused = out["label"]
    assert not isinstance(reused, SkippedStageResult)
    assert reused.metadata.actual_rows == 10 and reused.metadata.status.value == "completed"


def test_reuse_after_moving_the_workflow_directory(mill: gm.Mill, tmp_path: Path) -> None:
    first = three_stages(mill).run()
    expected = first.load_dataset()
    moved = tmp_path / "elsewhere"
    shutil.move(str(mill.artifact_path), str(moved))
    other = gm.Mill(moved, run_config=mill.run_config)
    out = three_stages(other).run(resume="always")
    assert actions(out) == ["reuse"] * 3
    assert out.load_dataset().equals(expected)


def test_only_the_changed_stage_and_descendants_rerun(mill: gm.Mill) -> None:
    first = three_stages(mill).run()
    base_files = mtimes(first.workflow_dir / "stage-0-base")
    out = three_stages(mill, middle=doubled("{{ n * 3 }}")).run(resume="if-possible")
    assert actions(out) == ["reuse", "run", "run"]
    assert out.plan["double"].reason == "expr of column 'd' changed"
    assert out.plan["label"].reason == "upstream 'double' reran"
    assert mtimes(out.workflow_dir / "stage-0-base") == base_files
    assert list(out.load_dataset().d) == [3 * n for n in out["base"].load_dataset().n]


def test_rerun_stage_reproduces_its_unchanged_rows(mill: gm.Mill) -> None:
    first = three_stages(mill).run()
    out = three_stages(mill).run(resume="if-possible", rerun_from="base")
    assert out.load_dataset().equals(first.load_dataset())


def test_missing_callback_output_reruns_from_that_stage(mill: gm.Mill) -> None:
    def build() -> Any:
        wf = mill.compose_workflow("cb")
        wf.add_stage("base", people(), num_records=8)
        wf.add_stage("even", doubled(), on_success=keep_even, on_success_version="1")
        return wf.add_stage("label", labelled())

    first = build().run()
    first.get_stage_output_path("even").unlink()
    out = build().run(resume="if-possible")
    assert actions(out) == ["reuse", "run", "run"]
    assert out.plan["even"].reason == "output even.parquet missing"


def test_unversioned_callback_is_never_reused(mill: gm.Mill) -> None:
    def build() -> Any:
        wf = mill.compose_workflow("cb").add_stage("base", people(), num_records=4)
        return wf.add_stage("even", doubled(), on_success=keep_even)

    build().run()
    plan = build().plan(resume="if-possible")
    assert plan["even"].action is StageAction.RUN
    assert plan["even"].reason == "callback has no on_success_version"


# --------------------------------------------------------------------- metadata problems

@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"schema_version": 1, "stages": 3}',
                                     '{"schema_version": 99, "workflow_name": "wf"}'])
def test_unusable_metadata_starts_fresh_or_raises(mill: gm.Mill, content: str) -> None:
    three_stages(mill).run()
    path = mill.artifact_path / "wf" / "workflow-metadata.json"
    path.write_text(content)
    with pytest.raises(ResumeError, match="no usable workflow metadata"):
        three_stages(mill).run(resume="always")
    assert path.read_text() == content
    with pytest.warns(UserWarning, match="starting fresh"):
        out = three_stages(mill).run(resume="if-possible")
    assert actions(out) == ["run"] * 3 and out.count_records() == 10


def test_foreign_metadata_starts_fresh(mill: gm.Mill) -> None:
    three_stages(mill).run()
    path = mill.artifact_path / "wf" / "workflow-metadata.json"
    data = json.loads(path.read_text())
    data["workflow_name"] = "someone-else"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="belongs to workflow 'someone-else'"):
        out = three_stages(mill).run(resume="if-possible")
    assert actions(out) == ["run"] * 3


def test_always_rejects_a_changed_stage_before_any_stage_runs(mill: gm.Mill) -> None:
    first = three_stages(mill).run()
    before = mtimes(first.workflow_dir)
    meta_before = (first.workflow_dir / "workflow-metadata.json").read_text()
    changed = three_stages(mill, middle=doubled("{{ n * 5 }}"))
    with pytest.raises(ResumeError, match=r"stage 'double' would run: expr of column 'd' changed"):
        changed.run(resume="always")
    assert mtimes(first.workflow_dir) == before
    assert (first.workflow_dir / "workflow-metadata.json").read_text() == meta_before


def test_never_leaves_an_existing_run_alone(mill: gm.Mill) -> None:
    first = three_stages(mill).run()
    before = mtimes(first.workflow_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = three_stages(mill).run(resume="never")
    assert any("already holds a workflow run" in str(w.message) for w in caught)
    assert second.workflow_dir != first.workflow_dir and mtimes(first.workflow_dir) == before


def test_plan_reads_only(mill: gm.Mill) -> None:
    wf = three_stages(mill)
    plan = wf.plan(resume="if-possible")
    assert [s.action for s in plan.stages] == [StageAction.RUN] * 3
    assert not mill.artifact_path.exists()


# ------------------------------------------- resume="always" behind a resuming stage, staleness

FAIL_AFTER: dict[str, int | None] = {"batches": None}


def flaky_tag(frame: pd.DataFrame) -> list[str]:
    """Batch custom column that fails once ``FAIL_AFTER['batches']`` batches went through."""
    left = FAIL_AFTER["batches"]
    if left is not None:
        if left <= 0:
            raise RuntimeError("injected failure")
        FAIL_AFTER["batches"] = left - 1
    return [f"tag{n}" for n in frame["n"]]


def random_tag(frame: pd.DataFrame) -> list[str]:
    """Not reproducible: a rerun with the same fingerprint produces other values."""
    return [uuid.uuid4().hex[:8] for _ in range(len(frame))]


def flaky_workflow(mill: gm.Mill, *, after_expr: str = "{{ tag }}!", extra: bool = False) -> Any:
    wf = mill.compose_workflow("flaky").add_stage("base", people(), num_records=12)
    wf.add_stage("slow", gm.ConfigBuilder().add_column(name="tag", column_type="custom", function=flaky_tag,
                                                       mode="batch", reads=["n"], version="1"))
    wf.add_stage("after", gm.ConfigBuilder().add_column(name="label", column_type="expression", expr=after_expr))
    return wf.add_stage("brandnew", doubled()) if extra else wf


def test_always_refuses_a_changed_or_new_stage_behind_a_resuming_one(mill: gm.Mill,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    flaky_workflow(mill).run()
    monkeypatch.setitem(FAIL_AFTER, "batches", 1)
    with pytest.raises(gm.GenerationError, match="injected failure"):
        flaky_workflow(mill).run(resume="if-possible", rerun_from="slow")
    monkeypatch.setitem(FAIL_AFTER, "batches", None)
    workflow_dir = mill.artifact_path / "flaky"
    before = mtimes(workflow_dir)

    changed = flaky_workflow(mill, after_expr="{{ tag }}?", extra=True)
    plan = changed.plan(resume="always")
    assert [s.action.value for s in plan.stages] == ["reuse", "resume", "run", "run"]
    assert plan["after"].reason == "expr of column 'label' changed (and upstream 'slow' resumed)"
    assert plan["brandnew"].reason == "new stage (no prior run) (and upstream 'slow' resumed)"
    with pytest.raises(ResumeError, match=r"stage 'after' would run: expr of column 'label' changed \(and "
                                          r"upstream 'slow' resumed\); stage 'brandnew' would run: new stage"):
        changed.run(resume="always")
    assert mtimes(workflow_dir) == before

    out = flaky_workflow(mill).run(resume="always")  # unchanged: only the resume's consequences run
    assert actions(out) == ["reuse", "resume", "run"]
    assert out.plan["after"].reason == "upstream 'slow' resumed"
    assert list(out.load_dataset().label) == [f"tag{n}!" for n in out["base"].load_dataset().n]


def random_workflow(mill: gm.Mill) -> Any:
    wf = mill.compose_workflow("rand")
    wf.add_stage("base", people().add_column(name="u", column_type="custom", function=random_tag, mode="batch",
                                             reads=["n"], version="1"), num_records=6)
    return wf.add_stage("copy", gm.ConfigBuilder().add_column(name="u2", column_type="expression", expr="{{ u }}"))


def test_downstream_of_a_regenerated_upstream_is_not_reused(mill: gm.Mill) -> None:
    random_workflow(mill).run()
    regenerated = random_workflow(mill).run(resume="if-possible", rerun_from="base", targets=["base"])
    assert actions(regenerated) == ["run"] and regenerated.plan.not_targeted == ("copy",)
    plan = random_workflow(mill).plan(resume="always")
    assert plan["copy"].reason == "upstream 'base' output changed"
    assert plan.always_blockers() == []  # nothing of its own changed: resume="always" accepts it
    out = random_workflow(mill).run(resume="if-possible")
    assert actions(out) == ["reuse", "run"]
    assert list(out.load_dataset().u2) == list(out.load_stage_output("base").u)
    assert actions(random_workflow(mill).run(resume="always")) == ["reuse", "reuse"]


# --------------------------------------------------------------- config errors before any work

def test_config_errors_of_later_stages_surface_before_any_stage_runs(mill: gm.Mill) -> None:
    def build(last: gm.ConfigBuilder) -> Any:
        wf = mill.compose_workflow("bad").add_stage("base", people(), num_records=4)
        return wf.add_stage("mid", doubled()).add_stage("last", last)

    llm = gm.ConfigBuilder().add_column(name="x", column_type="llm_text", model_alias="nope", prompt="{{ n }}")
    with pytest.raises(gm.ConfigError, match="stage 'last': unknown model alias 'nope'"):
        build(llm).run()
    missing = gm.ConfigBuilder().add_column(name="y", column_type="expression", expr="{{ missing_col }}")
    with pytest.raises(gm.ConfigError, match="stage 'last': .*missing_col"):
        build(missing).run()
    dropped = gm.ConfigBuilder().add_column(name="y", column_type="expression", expr="{{ tmp }}{{ d }}")
    assert not list((mill.artifact_path / "bad").glob("stage-*"))
    assert build(dropped).run().count_records() == 4  # upstream columns (its seed + generated) are known

    first = three_stages(mill).run()
    before = mtimes(first.workflow_dir)
    wf = mill.compose_workflow("wf").add_stage("base", people(), num_records=5)  # changed: base would RUN
    wf.add_stage("double", doubled()).add_stage("label", missing)
    with pytest.raises(gm.ConfigError, match="stage 'label'"):
        wf.run(resume="if-possible")
    assert mtimes(first.workflow_dir) == before


def keep_without_n(stage_dir: Path) -> Path:
    out = stage_dir / "no-n.parquet"
    pd.read_parquet(stage_dir / "parquet-files").drop(columns=["n"]).to_parquet(out)
    return out


def test_a_stage_is_validated_with_its_real_handoff_before_its_directory_is_cleared(mill: gm.Mill) -> None:
    def build(callback: Any, version: str) -> Any:
        wf = mill.compose_workflow("cb").add_stage("base", people(), num_records=4, on_success=callback,
                                                   on_success_version=version)
        return wf.add_stage("use", labelled())  # reads n: unknowable behind a callback until it ran

    first = build(keep_even, "1").run()
    kept = mtimes(first.workflow_dir / "stage-1-use")
    with pytest.raises(gm.ConfigError, match=r"stage 'use': .*\bn\b"):
        build(keep_without_n, "2").run(resume="if-possible")
    assert mtimes(first.workflow_dir / "stage-1-use") == kept
    meta = json.loads((first.workflow_dir / "workflow-metadata.json").read_text())
    assert [s["status"] for s in meta["stages"]] == ["completed", "completed"]


# --------------------------------------------------------------- inconsistent metadata on disk

@pytest.mark.parametrize(("stage", "field", "value", "message"), [
    (0, "output_rows", None, "is completed but has no output_rows"),
    (0, "output_rows", 0, "is completed with output_rows 0"),
    (1, "output_path", None, "is completed but has no output_path"),
    (2, "fingerprint", None, "is completed but has no fingerprint"),
])
def test_inconsistent_stage_records_are_not_valid_metadata(mill: gm.Mill, stage: int, field: str, value: Any,
                                                           message: str) -> None:
    three_stages(mill).run()
    path = mill.artifact_path / "wf" / "workflow-metadata.json"
    data = json.loads(path.read_text())
    data["stages"][stage][field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ResumeError, match=f"no usable workflow metadata .*not valid workflow metadata .*{message}"):
        three_stages(mill).run(resume="always")
    with pytest.warns(UserWarning, match=message):
        out = three_stages(mill).run(resume="if-possible")
    assert actions(out) == ["run"] * 3


# --------------------------------------------------------------------------------- overrides

def test_override_is_allowed_under_always(mill: gm.Mill, tmp_path: Path) -> None:
    first = three_stages(mill).run()
    approved = tmp_path / "approved.parquet"
    first.load_stage_output("double").iloc[:2].to_parquet(approved)
    out = three_stages(mill).run(resume="always", stage_output_overrides={"double": approved})
    assert actions(out) == ["reuse", "reuse", "run"] and out.count_records() == 2
    changed = three_stages(mill, middle=doubled("{{ n * 9 }}"))
    with pytest.raises(ResumeError, match="stage 'double' would run: expr of column 'd' changed"):
        changed.run(resume="always", stage_output_overrides={"double": approved})


def test_an_overridden_stage_may_come_out_empty(mill: gm.Mill, tmp_path: Path) -> None:
    def build() -> Any:
        wf = mill.compose_workflow("gate").add_stage("base", people(), num_records=4)
        wf.add_stage("review", doubled(), on_success=keep_none, on_success_version="1")
        return wf.add_stage("label", labelled())

    approved = tmp_path / "approved.parquet"
    pd.DataFrame({"n": [5, 6], "d": [10, 12]}).to_parquet(approved)
    out = build().run(stage_output_overrides={"review": approved})
    assert out.metadata.stages[1].status.value == "completed_empty"
    assert list(out.load_dataset().label) == ["#5", "#6"]
    again = build().run(resume="always", stage_output_overrides={"review": approved})
    assert actions(again) == ["reuse"] * 3
    plan = build().plan(resume="if-possible")  # without the override the empty output is an error again
    assert plan["review"].action is StageAction.RUN and "accepted only while an override" in plan["review"].reason
    with pytest.raises(WorkflowError, match="stage 'review' produced no rows"):
        build().run(resume="if-possible")


# ------------------------------------------------------------------------------------- nits

def test_always_without_prior_run_leaves_no_directory(mill: gm.Mill) -> None:
    wf = three_stages(mill)
    expected = f"no prior run of workflow 'wf' at {wf.workflow_dir}; run with resume=if-possible or never first"
    with pytest.raises(ResumeError, match=re.escape(expected)):
        wf.run(resume="always")
    assert not mill.artifact_path.exists()
    assert "no prior run" in wf.plan(resume="always").always_blockers()[0]
    assert not mill.artifact_path.exists()


def test_callback_output_footers_are_read_once(mill: gm.Mill, monkeypatch: pytest.MonkeyPatch) -> None:
    from gristmill.workflow import outputs

    opened: list[str] = []
    real = outputs.pq.ParquetFile

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(outputs.pq, "ParquetFile", counting)
    wf = mill.compose_workflow("cb").add_stage("base", people(), num_records=6, on_success=triple_outside,
                                               on_success_version="1")
    out = wf.run()
    assert opened == ["tripled.parquet"]  # pyarrow.parquet is patched as a whole: every footer read counts
    assert out.count_records() == 18
