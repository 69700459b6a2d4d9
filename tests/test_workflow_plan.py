"""The workflow planner, table-driven: prior state x change x resume mode -> action + reason.

``plan_stages`` is pure, so these tests build the prior state in memory: no files, no runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import gristmill as gm
from gristmill.errors import ResumeError, WorkflowError
from gristmill.workflow.fingerprint import StageInputs, output_identity, stage_components, stage_fingerprint
from gristmill.workflow.metadata import OutputFile, StageRecord, StageStatus, WorkflowMetadata
from gristmill.workflow.observe import DatasetSnapshot, OverrideInput, PriorState, StageObservation
from gristmill.workflow.plan import PlanOptions, StageAction, plan_stages
from gristmill.workflow.stage import StageDefinition, StageOptions, define_stage

ROWS = 10
SEEDS = {"a": 1, "b": 2, "c": 3}


def _cfg(expr: str = "{{ n }}") -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 9, "integer": True})
            .add_column(name="m", column_type="expression", expr=expr)
            .build())


def _keep(stage_dir: Path) -> Path:
    return stage_dir / "parquet-files"


def stages(*, b_expr: str = "{{ n }}", c_num: int | None = None, b_version: str | None = "v1",
           extra: bool = False, c_expr: str = "{{ n }}", b_sampling: str = "ordered", b_allow_empty: bool = True,
           c_processors: list[dict[str, Any]] | None = None) -> list[StageDefinition]:
    defs = [define_stage(0, "a", _cfg(), {"num_records": ROWS}, existing=[]),
            define_stage(1, "b", _cfg(b_expr), StageOptions(on_success=_keep, on_success_version=b_version,
                                                            allow_empty=b_allow_empty, sampling_strategy=b_sampling),
                         existing=["a"]),
            define_stage(2, "c", _cfg(c_expr), {"num_records": c_num, "output_processors": c_processors or ()},
                         existing=["a", "b"])]
    if extra:
        defs.append(define_stage(3, "d", _cfg(), existing=["a", "b", "c"]))
    return defs


def completed_prior(defs: list[StageDefinition], **edits: dict[str, Any]) -> PriorState:
    """Prior state of a complete run of ``defs``; ``edits`` change a stage's record fields."""
    records, identity, rows = [], None, ROWS
    for stage in defs:
        num = stage.num_records if stage.num_records is not None else rows
        components = stage_components(stage, StageInputs(num, identity, None))
        fingerprint = stage_fingerprint(components)
        record = StageRecord(index=stage.index, name=stage.name, directory=stage.directory_name,
                             status=StageStatus.COMPLETED, fingerprint=fingerprint, fingerprint_components=components,
                             requested_rows=num, output_rows=num, output_path=f"{stage.directory_name}/parquet-files")
        records.append(record.model_copy(update=edits.get(stage.name, {})))
        identity, rows = output_identity(fingerprint, record.output_files, None), num
    observed = {r.index: StageObservation(directory_exists=True) for r in records}
    return PriorState(metadata=WorkflowMetadata(workflow_name="wf", gristmill_version="0", stages=records),
                      stages=observed)


def observe(prior: PriorState, index: int, observation: StageObservation) -> PriorState:
    return replace(prior, stages={**prior.stages, index: observation})


def options(resume: str = "if-possible", **kwargs: Any) -> PlanOptions:
    return PlanOptions(resume=resume, batch_size=4, run_seeds=SEEDS, **kwargs)  # type: ignore[arg-type]


OVERRIDE = OverrideInput(Path("/x.parquet"), "f00d", 5)
OTHER_FILE = OutputFile(file="stage-1-b/parquet-files/batch_00000.parquet", rows=ROWS, bytes=1, sha256="beef")
DROP_M = {"name": "rm", "processor_type": "drop_columns", "column_names": ["m"]}
PARTIAL = StageObservation(directory_exists=True, dataset=DatasetSnapshot(batch_size=4, run_seed=2,
                                                                           completed_batches=3, total_batches=10))


def partial_b(defs: list[StageDefinition]) -> PriorState:
    return observe(completed_prior(stages(), b={"status": StageStatus.RUNNING}), 1, PARTIAL)


def empty_b(defs: list[StageDefinition]) -> PriorState:
    return completed_prior(stages(b_allow_empty=False), b={"status": StageStatus.COMPLETED_EMPTY, "output_rows": 0})


Case = tuple[str, Callable[[], list[StageDefinition]], Callable[[list[StageDefinition]], PriorState | None],
             dict[str, Any], list[str], dict[str, str], bool]

ok = stages
CASES: list[Case] = [
    # id, current stages, prior state (from the *original* stages), options, actions, reasons, always-ok
    ("nothing-before", ok, lambda d: None, {}, ["run", "run", "run"], {"a": "no prior run"}, False),
    ("unchanged", ok, completed_prior, {}, ["reuse"] * 3, {"a": "unchanged", "c": "unchanged"}, True),
    ("expr-changed", lambda: stages(b_expr="{{ n + 1 }}"), completed_prior, {}, ["reuse", "run", "run"],
     {"b": "expr of column 'm' changed", "c": "upstream 'b' reran"}, False),
    ("num-records-changed", lambda: stages(c_num=12), completed_prior, {}, ["reuse", "reuse", "run"],
     {"c": "num_records 10 -> 12"}, False),
    ("callback-version-bumped", lambda: stages(b_version="v2"), completed_prior, {}, ["reuse", "run", "run"],
     {"b": "on_success_version 'v1' -> 'v2'"}, False),
    ("callback-without-version", lambda: stages(b_version=None),
     lambda d: completed_prior(stages(b_version=None)), {}, ["reuse", "run", "run"],
     {"b": "callback has no on_success_version"}, False),
    ("output-missing", ok, lambda d: observe(completed_prior(d), 0, StageObservation(
        True, output_problem="output batch_00002.parquet missing")), {}, ["run", "run", "run"],
     {"a": "output batch_00002.parquet missing", "b": "upstream 'a' reran"}, False),
    ("partial-resumes", ok, lambda d: observe(completed_prior(d, b={"status": StageStatus.RUNNING}), 1, PARTIAL),
     {}, ["reuse", "resume", "run"], {"b": "3 of 10 batches done", "c": "upstream 'b' resumed"}, True),
    ("failed-resumes", ok, lambda d: observe(completed_prior(d, b={"status": StageStatus.FAILED}), 1, PARTIAL),
     {}, ["reuse", "resume", "run"], {"b": "3 of 10 batches done (last status failed)"}, True),
    ("partial-other-batch-size", ok, lambda d: observe(completed_prior(d, b={"status": StageStatus.RUNNING}), 1,
     replace(PARTIAL, dataset=replace(PARTIAL.dataset, batch_size=8))),  # type: ignore[arg-type]
     {}, ["reuse", "run", "run"], {"b": "batch_size is 4, the partial run used 8"}, False),
    ("partial-dir-gone", ok, lambda d: observe(completed_prior(d, b={"status": StageStatus.RUNNING}), 1,
     StageObservation(False, output_problem="stage directory stage-1-b missing")), {},
     ["reuse", "run", "run"], {"b": "partial run left no dataset"}, False),
    ("completed-empty", ok, lambda d: completed_prior(d, b={"status": StageStatus.COMPLETED_EMPTY, "output_rows": 0}),
     {}, ["reuse", "reuse", "skip_empty"], {"b": "unchanged (empty output)", "c": "upstream 'b' produced no rows"},
     True),
    ("new-stage", lambda: stages(extra=True), completed_prior, {}, ["reuse", "reuse", "reuse", "run"],
     {"d": "new stage"}, False),
    ("rerun-from", ok, completed_prior, {"rerun_from": "b"}, ["reuse", "run", "run"],
     {"b": "rerun_from 'b'", "c": "rerun_from 'b'"}, True),
    ("targets", ok, completed_prior, {"targets": ("b",)}, ["reuse", "reuse"], {}, True),
    ("never", ok, completed_prior, {"resume": "never"}, ["run"] * 3, {"a": "resume=never"}, True),
    ("corrupt-metadata", ok, lambda d: PriorState(metadata=None, problem="x.json is corrupt (bad)"), {},
     ["run"] * 3, {"a": "starting fresh: x.json is corrupt (bad)"}, False),
    # an override is an explicit request, like rerun_from: resume="always" accepts what it reruns
    ("override", ok, completed_prior, {"overrides": {"a": OVERRIDE}},
     ["reuse", "run", "run"], {"b": "output of upstream 'a' overridden", "c": "upstream 'b' reran"}, True),
    ("override-and-own-change", lambda: stages(b_expr="{{ n * 7 }}"), completed_prior, {"overrides": {"a": OVERRIDE}},
     ["reuse", "run", "run"], {"b": "output of upstream 'a' overridden; expr of column 'm' changed"}, False),
    # a stage forced by a resuming upstream is still compared with its own record
    ("forced-own-change", lambda: stages(c_expr="{{ n * 2 }}"), partial_b, {}, ["reuse", "resume", "run"],
     {"c": "expr of column 'm' changed (and upstream 'b' resumed)"}, False),
    ("forced-new-stage", lambda: stages(extra=True), partial_b, {}, ["reuse", "resume", "run", "run"],
     {"c": "upstream 'b' resumed", "d": "new stage (no prior run) (and upstream 'b' resumed)"}, False),
    ("forced-own-num-records", lambda: stages(c_num=12), partial_b, {}, ["reuse", "resume", "run"],
     {"c": "num_records 10 -> 12 (and upstream 'b' resumed)"}, False),
    # the upstream output was regenerated by an earlier (targeted or interrupted) run
    ("upstream-output-changed", ok, lambda d: completed_prior(d, b={"output_files": [OTHER_FILE]}), {},
     ["reuse", "reuse", "run"], {"c": "upstream 'b' output changed"}, True),
    ("sampling-strategy-changed", lambda: stages(b_sampling="shuffle"), completed_prior, {},
     ["reuse", "run", "run"], {"b": "sampling strategy changed ('ordered' -> 'shuffle')"}, False),
    ("output-processor-added", lambda: stages(c_processors=[DROP_M]), completed_prior, {},
     ["reuse", "reuse", "run"], {"c": "output processor 'rm' added"}, False),
    # an empty output accepted only because an override replaced it
    ("empty-overridden", lambda: stages(b_allow_empty=False), empty_b, {"overrides": {"b": OVERRIDE}},
     ["reuse", "reuse", "run"], {"b": "unchanged (empty output)", "c": "output of upstream 'b' overridden"}, True),
    ("empty-override-gone", lambda: stages(b_allow_empty=False), empty_b, {}, ["reuse", "run", "run"],
     {"b": "accepted only while an override replaced it"}, False),
]


@pytest.mark.parametrize(("current", "prior_of", "opts", "actions", "reasons", "always_ok"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_table(current: Callable[[], list[StageDefinition]],
                    prior_of: Callable[[list[StageDefinition]], PriorState | None], opts: dict[str, Any],
                    actions: list[str], reasons: dict[str, str], always_ok: bool) -> None:
    prior = prior_of(stages())
    plan = plan_stages(current(), prior, options(**opts))
    assert [s.action.value for s in plan.stages] == actions
    for name, reason in reasons.items():
        assert reason in plan[name].reason, plan.format_table()
    always = plan_stages(current(), prior, options(**{**opts, "resume": "always"})) \
        if opts.get("resume") != "never" else None
    if always is not None:
        assert (always.always_blockers() == []) == always_ok, always.always_blockers()


def test_override_repeated_with_same_content_is_reused() -> None:
    defs = stages()
    override = OverrideInput(Path("/x.parquet"), "f00d", 5)
    prior = completed_prior(defs)
    a_fp = prior.metadata.stages[0].fingerprint  # type: ignore[union-attr]
    upstream = output_identity(a_fp, [], "f00d")  # type: ignore[arg-type]
    b_components = stage_components(defs[1], StageInputs(5, upstream, None))
    b_fp = stage_fingerprint(b_components)
    c_components = stage_components(defs[2], StageInputs(5, output_identity(b_fp, [], None), None))
    edits = {"b": {"fingerprint": b_fp, "fingerprint_components": b_components, "output_rows": 5},
             "c": {"fingerprint": stage_fingerprint(c_components), "fingerprint_components": c_components}}
    plan = plan_stages(defs, completed_prior(defs, **edits), options(overrides={"a": override}))
    assert [s.action for s in plan.stages] == [StageAction.REUSE] * 3


def test_always_check_names_stage_and_reason() -> None:
    plan = plan_stages(stages(b_expr="{{ n * 3 }}"), completed_prior(stages()), options("always"))
    with pytest.raises(ResumeError, match=r"stage 'b' would run: expr of column 'm' changed"):
        plan.check()
    with pytest.raises(ResumeError, match="no prior run; run with resume=if-possible or never first"):
        plan_stages(stages(), None, options("always")).check()
    with pytest.raises(ResumeError, match=r"no usable workflow metadata \(x is corrupt\); rerun with "
                                          "resume=if-possible to start fresh"):
        plan_stages(stages(), PriorState(metadata=None, problem="x is corrupt"), options("always")).check()


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(WorkflowError, match="rerun_from needs resume"):
        plan_stages(stages(), None, options("never", rerun_from="b"))
    with pytest.raises(WorkflowError, match="unknown stage 'zz'"):
        plan_stages(stages(), None, options(targets=("zz",)))
    with pytest.raises(WorkflowError, match="unknown stage 'zz'"):
        plan_stages(stages(), None, options(rerun_from="zz"))
    with pytest.raises(WorkflowError, match="rerun_from 'c' comes after the last target 'a'"):
        plan_stages(stages(), completed_prior(stages()), options(targets=("a",), rerun_from="c"))


def test_targets_list_the_rest_as_not_targeted() -> None:
    plan = plan_stages(stages(), completed_prior(stages()), options(targets=("a",)))
    assert [s.name for s in plan.stages] == ["a"] and plan.not_targeted == ("b", "c")
    assert "not targeted" in plan.format_table()
    assert plan.to_dict()["stages"][0]["action"] == "reuse"


def test_seed_content_of_first_stage_is_fingerprinted() -> None:
    defs = stages()
    prior = replace(completed_prior(defs), first_seed_digest="other")
    plan = plan_stages(defs, prior, options())
    assert plan["a"].action is StageAction.RUN and "seed dataset content changed" in plan["a"].reason


def test_reasons_name_the_change_once() -> None:
    plan = plan_stages(stages(b_sampling="shuffle"), completed_prior(stages()), options())
    assert plan["b"].reason == "sampling strategy changed ('ordered' -> 'shuffle')"
    changed = [{**DROP_M, "column_names": ["n"]}]
    plan = plan_stages(stages(c_processors=changed), completed_prior(stages(c_processors=[DROP_M])), options())
    assert plan["c"].reason == "output processor 'rm' changed"


def test_first_stage_identity_includes_its_seed_digest_without_prior_metadata() -> None:
    """Planner and runner compute a stage's identity with one function, from the same inputs."""
    from gristmill.workflow.fingerprint import stage_identity

    defs = stages()
    plan = plan_stages(defs, PriorState(metadata=None, first_seed_digest="abc"), PlanOptions())
    expected = stage_identity(defs[0], first_seed_digest="abc")
    assert expected is not None and plan["a"].fingerprint == expected.fingerprint
    assert expected.components["seed_content"] == "abc"
