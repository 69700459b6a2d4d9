"""DAG workflows: parents, seed / join / side inputs, the planner over a diamond, parallel
branches, failure and resume, and fingerprints of linear chains unchanged from before DAGs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import gristmill as gm
from gristmill.errors import GristmillError, WorkflowError
from gristmill.workflow.fingerprint import output_identity, stage_identity
from gristmill.workflow.metadata import OutputFile, StageRecord, StageStatus, WorkflowMetadata
from gristmill.workflow.observe import DatasetSnapshot, PriorState, StageObservation
from gristmill.workflow.plan import PlanOptions, plan_stages
from gristmill.workflow.schedule import run_dag
from gristmill.workflow.stage import StageDefinition, define_stage

ROWS = 8
JUDGES = ("judge_a", "judge_b", "judge_c")


def _gen() -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="row_id", column_type="sampler", sampler_type="uuid", params={"short_form": True})
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 9, "integer": True})
            .build())


def _judge(name: str, expr: str) -> gm.DatasetConfig:
    return gm.ConfigBuilder().add_column(name=f"score_{name[-1]}", column_type="expression", expr=expr).build()


def _merge() -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="total", column_type="expression", expr="{{ score_a }}+{{ score_b }}+{{ score_c }}")
            .build())


def diamond(*, b_expr: str = "{{ n * 2 }}", gen_rows: int = ROWS) -> list[StageDefinition]:
    """gen -> judge_a, judge_b, judge_c -> merge (seeded by judge_a, the others joined on row_id)."""
    defs = [define_stage(0, "gen", _gen(), {"num_records": gen_rows}, existing=[])]
    exprs = {"judge_a": "{{ n + 1 }}", "judge_b": b_expr, "judge_c": "{{ n * 3 }}"}
    for i, name in enumerate(JUDGES, start=1):
        defs.append(define_stage(i, name, _judge(name, exprs[name]), {"depends_on": ["gen"]},
                                 existing=[d.name for d in defs]))
    defs.append(define_stage(4, "merge", _merge(), {"depends_on": list(JUDGES), "seed_from": "judge_a",
                                                    "join": {"judge_b": "row_id", "judge_c": "row_id"}},
                             existing=[d.name for d in defs]))
    return defs


def _files(stage: StageDefinition, tag: str = "") -> list[OutputFile]:
    return [OutputFile(file=f"{stage.directory_name}/parquet-files/batch_00000.parquet", rows=ROWS, bytes=1,
                       sha256=(stage.name + tag).encode().hex())]


def completed(defs: list[StageDefinition], *, files: dict[str, list[OutputFile]] | None = None,
              status: dict[str, StageStatus] | None = None) -> PriorState:
    """Prior state of a complete run of ``defs`` (fingerprints as the runner records them)."""
    records, outputs = [], {}
    for stage in defs:
        seed = outputs.get(stage.seed_parent or "")
        identity = stage_identity(stage, first_seed_digest=None, upstream=seed, upstream_rows=ROWS,
                                  parents={p: outputs[p] for p in stage.extra_parents})
        assert identity is not None
        out = (files or {}).get(stage.name, _files(stage))
        records.append(StageRecord(index=stage.index, name=stage.name, directory=stage.directory_name,
                                   status=(status or {}).get(stage.name, StageStatus.COMPLETED),
                                   fingerprint=identity.fingerprint, fingerprint_components=identity.components,
                                   output_rows=ROWS, output_path=f"{stage.directory_name}/parquet-files",
                                   output_files=out, depends_on=list(stage.parents)))
        # Children were built from the original files: a changed record means "regenerated since".
        outputs[stage.name] = output_identity(identity.fingerprint, _files(stage), None)
    observed = {r.index: StageObservation(directory_exists=True) for r in records}
    return PriorState(metadata=WorkflowMetadata(workflow_name="wf", gristmill_version="0", stages=records),
                      stages=observed)


PARTIAL = StageObservation(directory_exists=True, dataset=DatasetSnapshot(batch_size=4, run_seed=2,
                                                                           completed_batches=1, total_batches=2))
PLAN_CASES: list[tuple[str, Callable[[], list[StageDefinition]], Callable[[], PriorState], dict[str, Any],
                       dict[str, str], dict[str, str]]] = [
    ("unchanged", diamond, lambda: completed(diamond()), {},
     {"gen": "reuse", "judge_a": "reuse", "judge_b": "reuse", "judge_c": "reuse", "merge": "reuse"}, {}),
    ("judge-b-prompt", lambda: diamond(b_expr="{{ n * 5 }}"), lambda: completed(diamond()), {},
     {"gen": "reuse", "judge_a": "reuse", "judge_b": "run", "judge_c": "reuse", "merge": "run"},
     {"judge_b": "expr of column 'score_b' changed", "merge": "upstream 'judge_b' reran"}),
    ("gen-changed", lambda: diamond(gen_rows=9), lambda: completed(diamond()), {},
     {"gen": "run", "judge_a": "run", "judge_b": "run", "judge_c": "run", "merge": "run"},
     {"gen": "num_records 8 -> 9", "judge_c": "upstream 'gen' reran", "merge": "upstream 'gen' reran"}),
    ("targets-judge-a", lambda: diamond(b_expr="{{ n * 5 }}"), lambda: completed(diamond()),
     {"targets": ("judge_a",)}, {"gen": "reuse", "judge_a": "reuse"}, {}),
    ("joined-output-regenerated", diamond, lambda: completed(diamond(), files={"judge_c": _files(diamond()[3], "x")}),
     {}, {"gen": "reuse", "judge_a": "reuse", "judge_b": "reuse", "judge_c": "reuse", "merge": "run"},
     {"merge": "upstream 'judge_c' output changed"}),
    ("rerun-from-branch", diamond, lambda: completed(diamond()), {"rerun_from": "judge_c"},
     {"gen": "reuse", "judge_a": "reuse", "judge_b": "reuse", "judge_c": "run", "merge": "run"},
     {"merge": "rerun_from 'judge_c'"}),
    ("branch-resumes", diamond,
     lambda: replace(completed(diamond(), status={"judge_b": StageStatus.FAILED}),
                     stages={**completed(diamond()).stages, 2: PARTIAL}), {},
     {"gen": "reuse", "judge_a": "reuse", "judge_b": "resume", "judge_c": "reuse", "merge": "run"},
     {"merge": "upstream 'judge_b' resumed"}),
]


@pytest.mark.parametrize(("current", "prior", "opts", "actions", "reasons"), [c[1:] for c in PLAN_CASES],
                         ids=[c[0] for c in PLAN_CASES])
def test_diamond_plan(current: Callable[[], list[StageDefinition]], prior: Callable[[], PriorState],
                      opts: dict[str, Any], actions: dict[str, str], reasons: dict[str, str]) -> None:
    plan = plan_stages(current(), prior(), PlanOptions(batch_size=4, run_seeds={"judge_b": 2}, **opts))
    assert {s.name: s.action.value for s in plan.stages} == actions, plan.format_table()
    for name, reason in reasons.items():
        assert reason in plan[name].reason, plan.format_table()
    assert plan["gen"].parents == () and plan["judge_a"].parents == ("gen",)
    if "merge" in actions:
        assert plan["merge"].parents == JUDGES
    else:
        assert plan.not_targeted == ("judge_b", "judge_c", "merge")


def _add(*specs: tuple[str, dict[str, Any]]) -> list[StageDefinition]:
    defs: list[StageDefinition] = []
    for name, options in specs:
        cfg = _gen() if not defs else _judge(name, "{{ n }}")
        defs.append(define_stage(len(defs), name, cfg, options, existing=[d.name for d in defs]))
    return defs


ROOT = ("gen", {"num_records": 4})
ERRORS: list[tuple[str, list[tuple[str, dict[str, Any]]], str]] = [
    ("unknown-parent", [ROOT, ("j", {"depends_on": ["nope"]})], "stage 'j' depends on 'nope', which is not a stage"),
    ("parent-added-later", [ROOT, ("j", {"depends_on": ["k"]}), ("k", {})], "stage 'j' depends on 'k'"),
    ("self", [ROOT, ("j", {"depends_on": ["j"]})], "stage 'j' depends on itself"),
    ("twice", [ROOT, ("j", {"depends_on": ["gen", "gen"]})], "depends_on names a stage twice"),
    ("ambiguous-seed", [ROOT, ("a", {}), ("j", {"depends_on": ["gen", "a"], "join": {"a": "row_id"}})],
     "stage 'j' has several parents .* seed_from"),
    ("seed-not-parent", [ROOT, ("a", {}), ("j", {"depends_on": ["a"], "seed_from": "gen"})],
     "seed_from names 'gen', which is not one of its parents"),
    ("join-not-parent", [ROOT, ("a", {}), ("j", {"depends_on": ["a"], "join": {"gen": "row_id"}})],
     "join names 'gen', which is not one of its parents"),
    ("loose-parent", [ROOT, ("a", {}), ("j", {"depends_on": ["gen", "a"], "seed_from": "gen"})],
     r"parent\(s\) \['a'\] are neither its seed"),
    ("seed-also-side", [ROOT, ("j", {"side_inputs": ["gen"]})], "'gen' is its seed parent"),
    ("root-with-join", [ROOT, ("j", {"depends_on": [], "join": {"gen": "x"}, "num_records": 2})],
     "stage 'j' is a root stage"),
    ("root-without-rows", [ROOT, ("j", {"depends_on": []})], "stage 'j' is a root stage .*give num_records"),
]


@pytest.mark.parametrize(("specs", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_dag_errors_at_add_stage(specs: list[tuple[str, dict[str, Any]]], message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        _add(*specs)


# -- linear chains keep their fingerprints -----------------------------------------------------------

def _keep(stage_dir: Path) -> Path:
    return stage_dir


def _cfg(expr: str) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 9, "integer": True})
            .add_column(name="m", column_type="expression", expr=expr).build())


def test_linear_chain_fingerprints_are_those_before_dags() -> None:
    """Digests computed with the code before DAG support (git HEAD at the time): a stored linear
    workflow must still be reused after the upgrade."""
    a = define_stage(0, "a", _cfg("{{ n }}"), {"num_records": 10}, existing=[])
    b = define_stage(1, "b", _cfg("{{ n + 1 }}"), {
        "on_success": _keep, "on_success_version": "v1", "sampling_strategy": "shuffle",
        "output_processors": [{"name": "rm", "processor_type": "drop_columns", "column_names": ["m"]}]},
        existing=["a"])
    c = define_stage(2, "c", _cfg("{{ n * 2 }}"), {
        "selection_strategy": {"selection_type": "index_range", "start": 0, "end": 5}, "allow_empty": True},
        existing=["a", "b"])
    ia = stage_identity(a, first_seed_digest=None)
    assert ia is not None
    fa = [OutputFile(file="stage-0-a/parquet-files/batch_00000.parquet", rows=10, bytes=100, sha256="aa" * 32)]
    ib = stage_identity(b, first_seed_digest=None, upstream=output_identity(ia.fingerprint, fa, None), upstream_rows=10)
    assert ib is not None
    fb = [OutputFile(file="stage-1-b/x.parquet", rows=7, bytes=50, sha256="bb" * 32)]
    ic = stage_identity(c, first_seed_digest=None, upstream=output_identity(ib.fingerprint, fb, "cafe"),
                        upstream_rows=7)
    assert ic is not None
    assert [ia.fingerprint, ib.fingerprint, ic.fingerprint] == [
        "f45c27eab200a9f41b776428fc9b867b3e3111ba395da2ddf9e44bc0ee7c51a2",
        "643b0692981462bfd26e2225dace65079d9a2651a31b3d146a2436355163c002",
        "b4b4f162ebef63f4c5f435a6cfb221f9f3e316f3661455c10f4a920d056ec723"]  # c: IndexRange end now inclusive
    assert "parents" not in ic.components and "join" not in ic.components


def _people() -> gm.ConfigBuilder:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 100, "integer": True})
            .add_column(name="tmp", column_type="expression", expr="t{{ n }}"))


@pytest.fixture
def mill(tmp_path: Path) -> gm.Mill:
    return gm.Mill(tmp_path / "artifacts", run_config=gm.RunConfig(batch_size=4, show_progress=False))


def test_linear_chain_run_records_the_fingerprints_before_dags(mill: gm.Mill) -> None:
    """The same chain run through the engine (digests recorded by the code before DAGs)."""
    wf = mill.compose_workflow("chain")
    wf.add_stage("a", _people(), num_records=10)
    wf.add_stage("b", gm.ConfigBuilder().add_column(name="d", column_type="expression", expr="{{ n * 2 }}",
                                                    dtype="int"))
    wf.add_stage("c", gm.ConfigBuilder().add_column(name="label", column_type="expression", expr="#{{ n }}"),
                 num_records=6)
    out = wf.run()
    assert [r.fingerprint for r in out.metadata.stages] == [
        "4e478f0d520f9a3cd7fa23c531f38347e50efefff6817e348d6330280a093660",
        "dc4c16490476c402f906a9fa67df191d39fd62025e577da25c0a88a8d144e183",
        "52c7494579179c203abbac3b5788334bffbf842045646130de67bb13548249f1"]
    assert [r.depends_on for r in out.metadata.stages] == [[], ["a"], ["b"]]


# -- end to end ------------------------------------------------------------------------------------

def build_diamond(mill: gm.Mill, *, b_expr: str = "{{ n * 2 }}", name: str = "dia") -> gm.CompositeWorkflow:
    wf = mill.compose_workflow(name)
    wf.add_stage("gen", _gen(), num_records=ROWS)
    exprs = {"judge_a": "{{ n + 1 }}", "judge_b": b_expr, "judge_c": "{{ n * 3 }}"}
    for judge in JUDGES:
        wf.add_stage(judge, _judge(judge, exprs[judge]), depends_on=["gen"])
    wf.add_stage("merge", _merge(), depends_on=list(JUDGES), seed_from="judge_a",
                 join={"judge_b": "row_id", "judge_c": "row_id"})
    return wf


def test_diamond_runs_joins_and_reruns_one_branch(mill: gm.Mill) -> None:
    out = build_diamond(mill).run()
    merged = out.load_stage_output("merge")
    assert len(merged) == ROWS and out.final_stage == "merge"
    expected = [f"{n + 1}+{n * 2}+{n * 3}" for n in merged["n"]]
    assert merged["total"].tolist() == expected
    gen = out.load_stage_output("gen").set_index("row_id")
    assert (merged.set_index("row_id")["n"] == gen.loc[merged["row_id"], "n"]).all()

    again = build_diamond(mill, b_expr="{{ n * 5 }}")
    plan = again.plan()
    assert plan.actions() == {"gen": "reuse", "judge_a": "reuse", "judge_b": "run", "judge_c": "reuse",
                              "merge": "run"}
    rerun = again.run()
    assert rerun.load_stage_output("merge")["total"].tolist() == [f"{n + 1}+{n * 5}+{n * 3}" for n in merged["n"]]
    assert {s.name: s.action.value for s in build_diamond(mill, b_expr="{{ n * 5 }}").plan().stages} == {
        name: "reuse" for name in ("gen", *JUDGES, "merge")}


def test_targets_materialise_only_ancestors(mill: gm.Mill, tmp_path: Path) -> None:
    out = build_diamond(mill).run(targets="judge_a")
    assert list(out) == ["gen", "judge_a"]
    assert sorted(p.name for p in (tmp_path / "artifacts" / "dia").glob("stage-*")) == ["stage-0-gen",
                                                                                       "stage-1-judge_a"]


def test_join_key_missing_is_refused_before_any_work(mill: gm.Mill, tmp_path: Path) -> None:
    wf = mill.compose_workflow("badjoin")
    wf.add_stage("gen", _gen(), num_records=4)
    wf.add_stage("a", _judge("judge_a", "{{ n }}"), depends_on=["gen"])
    wf.add_stage("b", _judge("judge_b", "{{ n }}"), depends_on=["gen"])
    wf.add_stage("m", _merge(), depends_on=["a", "b"], seed_from="a", join={"b": "missing_key"})
    with pytest.raises(WorkflowError, match="stage 'm': join key 'missing_key' is not a column of the seed rows"):
        wf.run()
    assert not (tmp_path / "artifacts" / "badjoin" / "stage-0-gen").exists()


def test_side_input_is_a_list_of_row_dicts(mill: gm.Mill) -> None:
    wf = mill.compose_workflow("side")
    wf.add_stage("labels", gm.ConfigBuilder().add_column(
        name="label", column_type="sampler", sampler_type="category", params={"values": ["x", "y"]}), num_records=3)
    wf.add_stage("gen", _gen(), depends_on=[], num_records=5)
    wf.add_stage("use", gm.ConfigBuilder().add_column(
        name="all", column_type="expression", expr="{{ labels | map(attribute='label') | join(',') }}"),
        depends_on=["gen", "labels"], seed_from="gen", side_inputs=["labels"])
    out = wf.run()
    labels = ",".join(out.load_stage_output("labels")["label"])
    used = out.load_stage_output("use")
    assert used["all"].tolist() == [labels] * 5 and len(used) == 5


def test_side_input_too_large_is_refused(mill: gm.Mill, monkeypatch: pytest.MonkeyPatch) -> None:
    import gristmill.workflow.handoff as handoff

    monkeypatch.setattr(handoff, "SIDE_INPUT_MAX_ROWS", 2)
    wf = mill.compose_workflow("bigside")
    wf.add_stage("gen", _gen(), num_records=3)
    wf.add_stage("other", _gen(), depends_on=[], num_records=2)
    wf.add_stage("use", _judge("judge_a", "{{ n }}"), depends_on=["other", "gen"], seed_from="other",
                 side_inputs=["gen"])
    with pytest.raises(WorkflowError, match="stage 'use': side input 'gen' has 3 rows, more than the 2"):
        wf.run()


def test_workflow_file_with_dag_fields(tmp_path: Path) -> None:
    spec = {"name": "spec-dag", "run": {"batch_size": 4, "show_progress": False}, "stages": [
        {"name": "gen", "num_records": 4, "config": _gen().to_dict()},
        {"name": "a", "depends_on": ["gen"], "config": _judge("judge_a", "{{ n }}").to_dict()},
        {"name": "b", "depends_on": ["gen"], "config": _judge("judge_b", "{{ n }}").to_dict()},
        {"name": "m", "depends_on": ["a", "b"], "seed_from": "a", "join": {"b": "row_id"},
         "config": _merge().to_dict() | {"columns": [{"name": "t", "column_type": "expression",
                                                       "expr": "{{ score_a }}/{{ score_b }}"}]}}]}
    path = tmp_path / "wf.yaml"
    path.write_text(json.dumps(spec))
    with gm.load_workflow(path) as wf:
        plan = wf.plan()
        assert plan["m"].parents == ("a", "b")
        out = wf.run()
    frame = out.load_stage_output("m")
    assert frame["t"].tolist() == [f"{n}/{n}" for n in frame["n"]]


# -- parallel branches, failure, resume -------------------------------------------------------------

def test_independent_branches_run_concurrently() -> None:
    inside, peak, lock = [0], [0], threading.Lock()

    def work(name: str) -> str:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return name

    finished: list[str] = []
    run_dag(["gen", *JUDGES, "merge"], {"gen": [], **{j: ["gen"] for j in JUDGES}, "merge": list(JUDGES)}, work,
            lambda name, _: finished.append(name))
    assert peak[0] == 3 and finished[0] == "gen" and finished[-1] == "merge"


class Boom:
    """A custom column that fails while ``armed`` (a module-level switch the test flips)."""

    armed = True

    @staticmethod
    def value(row: dict[str, Any]) -> int:
        if Boom.armed:
            raise RuntimeError("branch b exploded")
        return int(row["n"]) * 7


def _slow(row: dict[str, Any]) -> int:
    time.sleep(0.02)  # the failing branch fails first; this one is still running and must finish
    return int(row["n"]) + 1


def failing_workflow(mill: gm.Mill) -> gm.CompositeWorkflow:
    wf = mill.compose_workflow("fails")
    wf.add_stage("gen", _gen(), num_records=ROWS)
    wf.add_stage("good", gm.ConfigBuilder().add_column(name="g", column_type="custom", function=_slow,
                                                       reads=["n"]), depends_on=["gen"])
    wf.add_stage("bad", gm.ConfigBuilder().add_column(name="b", column_type="custom", function=Boom.value,
                                                      reads=["n"]), depends_on=["gen"])
    wf.add_stage("after_bad", gm.ConfigBuilder().add_column(name="x", column_type="expression", expr="{{ b }}"),
                 depends_on=["bad"])
    return wf


def test_failed_branch_keeps_the_other_and_resume_runs_only_it(mill: gm.Mill, tmp_path: Path) -> None:
    Boom.armed = True
    with pytest.raises(GristmillError, match="branch b exploded"):
        failing_workflow(mill).run()
    meta = json.loads((tmp_path / "artifacts" / "fails" / "workflow-metadata.json").read_text())
    status = {s["name"]: s["status"] for s in meta["stages"]}
    assert status == {"gen": "completed", "good": "completed", "bad": "failed"}  # after_bad never started

    Boom.armed = False
    plan = failing_workflow(mill).plan()
    assert plan.actions() == {"gen": "reuse", "good": "reuse", "bad": "resume", "after_bad": "run"}, \
        plan.format_table()
    out = failing_workflow(mill).run()
    frame = out.load_stage_output("after_bad")
    assert frame["x"].tolist() == [str(n * 7) for n in frame["n"]]
    assert out.metadata.stages[1].last_action == "reuse"


def test_plan_graph_in_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from gristmill.cli.main import app

    monkeypatch.chdir(tmp_path)
    spec = {"name": "g", "stages": [
        {"name": "gen", "num_records": 4, "config": _gen().to_dict()},
        {"name": "a", "depends_on": ["gen"], "config": _judge("judge_a", "{{ n }}").to_dict()},
        {"name": "b", "depends_on": ["gen"], "config": _judge("judge_b", "{{ n }}").to_dict()},
        {"name": "m", "depends_on": ["a", "b"], "seed_from": "a", "side_inputs": ["b"],
         "config": _judge("judge_c", "{{ n }}").to_dict()}]}
    (tmp_path / "wf.yaml").write_text(json.dumps(spec))
    graph = CliRunner().invoke(app, ["plan", "wf.yaml", "--graph"])
    assert graph.exit_code == 0, graph.output
    assert graph.output.splitlines()[0] == "graph TD"
    for edge in ("gen --> a", "gen --> b", "a --> m", "b -. side input .-> m"):
        assert edge in graph.output
    table = CliRunner().invoke(app, ["plan", "wf.yaml", "--json"])
    assert json.loads(table.output)["stages"][3]["parents"] == ["a", "b"]
    assert not (tmp_path / "artifacts").exists()


def test_seed_parent_defaults(mill: gm.Mill) -> None:
    wf = mill.compose_workflow("defaults").add_stage("gen", _gen(), num_records=2)
    wf.add_stage("a", _judge("judge_a", "{{ n }}"))
    assert wf.stages[1].parents == ("gen",) and wf.stages[1].seed_parent == "gen"
    with pytest.raises(WorkflowError, match="depends_on must be a list of stage names"):
        wf.add_stage("b", _judge("judge_b", "{{ n }}"), depends_on="gen")  # type: ignore[arg-type]
