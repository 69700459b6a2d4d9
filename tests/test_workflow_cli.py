"""Workflow files (YAML) and the ``gristmill run | plan | status`` commands."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gristmill as gm
from gristmill.cli.main import app
from gristmill.errors import ConfigError
from gristmill.workflow.spec import load_workflow_spec

CALLBACK_MODULE = textwrap.dedent("""
    from pathlib import Path
    import pandas as pd

    def keep_small(stage_dir):
        frame = pd.read_parquet(Path(stage_dir) / "parquet-files")
        out = Path(stage_dir) / "small.parquet"
        frame[frame.n < 50].to_parquet(out)
        return out
""")

WORKFLOW = textwrap.dedent("""
    name: cli-wf
    artifact_path: out
    run: {batch_size: 5, show_progress: false}
    stages:
      - name: base
        num_records: 20
        config: base.yaml
      - name: small
        on_success: wfcli_callbacks:keep_small
        on_success_version: "1"
        allow_empty: true
        config:
          columns:
            - {name: twice, column_type: expression, expr: "{{ n * 2 }}", dtype: int}
""")

BASE = textwrap.dedent("""
    columns:
      - {name: n, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 100, integer: true}}
""")


@pytest.fixture
def workflow_file(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "wfcli_callbacks.py").write_text(CALLBACK_MODULE)
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / "workflow.yaml"
    path.write_text(WORKFLOW)
    yield path
    sys.modules.pop("wfcli_callbacks", None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_run_plan_status_round_trip(workflow_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(workflow_file)])
    assert result.exit_code == 0, result.output
    assert "RUN" in result.output and "done" in result.output
    planned = runner.invoke(app, ["plan", str(workflow_file), "--json"])
    assert planned.exit_code == 0, planned.output
    data = json.loads(planned.output)
    assert [s["action"] for s in data["stages"]] == ["reuse", "reuse"]
    table = runner.invoke(app, ["plan", str(workflow_file)])
    assert "REUSE" in table.output and "unchanged" in table.output
    status = runner.invoke(app, ["status", str(workflow_file.parent / "out" / "cli-wf")])
    assert status.exit_code == 0 and "completed" in status.output
    again = runner.invoke(app, ["run", str(workflow_file), "--resume", "always", "--target", "base"])
    assert again.exit_code == 0, again.output


def test_cli_errors_are_one_red_line(workflow_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    bad = runner.invoke(app, ["run", str(workflow_file), "--override", "base"])
    assert bad.exit_code == 1 and "STAGE=PATH" in bad.output
    never = runner.invoke(app, ["run", str(workflow_file), "--resume", "never", "--rerun-from", "small"])
    assert never.exit_code == 1 and "rerun_from needs resume" in never.output
    always = runner.invoke(app, ["run", str(workflow_file), "--resume", "always"])
    assert always.exit_code == 1 and "resume=always refused" in always.output
    status = runner.invoke(app, ["status", str(tmp_path)])
    assert status.exit_code == 1 and "holds no workflow-metadata.json" in status.output


def test_spec_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("name: x\nstages:\n  - name: a\n    config: {}\n    num_recordz: 3\n")
    with pytest.raises(ConfigError, match=r"stages\.0\.num_recordz"):
        load_workflow_spec(path)
    path.write_text("name: x\nstages: []\n")
    with pytest.raises(ConfigError, match="stages"):
        load_workflow_spec(path)
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_workflow_spec(path)


def test_example_workflow_file_loads() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "workflow.yaml"
    sys.path.insert(0, str(example.parent))
    try:
        wf = gm.load_workflow(example)
    finally:
        sys.path.remove(str(example.parent))
    assert [s.name for s in wf.stages] == ["people", "greetings", "cards"]
    assert wf.stages[1].options.on_success_version == "adults-v1"


THREE_STAGES = textwrap.dedent("""
    name: three
    artifact_path: out
    run: {batch_size: 5, show_progress: false}
    stages:
      - {name: base, num_records: 10, config: base.yaml}
      - name: double
        config: {columns: [{name: d, column_type: expression, expr: "{{ n * 2 }}"}]}
      - name: label
        config: {columns: [{name: label, column_type: expression, expr: "#{{ n }}"}]}
""")


def test_target_given_several_times(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / "three.yaml"
    path.write_text(THREE_STAGES)
    runner = CliRunner()
    planned = runner.invoke(app, ["plan", str(path), "--json", "--target", "double", "--target", "base"])
    assert planned.exit_code == 0, planned.output
    data = json.loads(planned.output)
    assert [s["name"] for s in data["stages"]] == ["base", "double"] and data["not_targeted"] == ["label"]
    ran = runner.invoke(app, ["run", str(path), "--target", "base", "--target", "double"])
    assert ran.exit_code == 0, ran.output
    status = json.loads(runner.invoke(app, ["status", str(tmp_path / "out" / "three"), "--json"]).output)
    assert [s["name"] for s in status["stages"]] == ["base", "double"]


def test_plan_of_a_dataset_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.yaml").write_text(BASE)
    runner = CliRunner()
    fresh = runner.invoke(app, ["plan", "items.yaml", "-n", "10", "--json"])
    assert fresh.exit_code == 0, fresh.output
    data = json.loads(fresh.output)
    assert data["dataset"] == "items" and data["action"] == "fresh" and data["reason"] == "no earlier run"
    assert Path(data["path"]) == Path("artifacts") / "items"
    assert not (tmp_path / "artifacts").exists()  # planning writes nothing
    created = runner.invoke(app, ["create", "items.yaml", "-n", "10", "--batch-size", "5"])
    assert created.exit_code == 0, created.output
    same = runner.invoke(app, ["plan", "items.yaml", "-n", "10", "--batch-size", "5"])
    assert same.exit_code == 0 and "REUSE" in same.output and "complete with 10 rows" in same.output
    grow = json.loads(runner.invoke(app, ["plan", "items.yaml", "-n", "20", "--batch-size", "5", "--json"]).output)
    assert grow["action"] == "grow" and grow["batches_missing"] == 2
    named = json.loads(runner.invoke(app, ["plan", "items.yaml", "-n", "5", "--name", "other", "--json"]).output)
    assert named["dataset"] == "other" and named["action"] == "fresh"


def test_plan_of_a_dataset_config_needs_num_records(tmp_path: Path) -> None:
    (tmp_path / "items.yaml").write_text(BASE)
    runner = CliRunner()
    missing = runner.invoke(app, ["plan", str(tmp_path / "items.yaml")])
    assert missing.exit_code == 1 and "--num-records" in missing.output
    always = runner.invoke(app, ["plan", str(tmp_path / "items.yaml"), "-n", "3", "--resume", "always",
                                 "--artifact-path", str(tmp_path / "a")])
    assert always.exit_code == 1 and "resume=always" in always.output
    bad = runner.invoke(app, ["plan", str(tmp_path / "items.yaml"), "-n", "3", "--batch-size", "0"])
    assert bad.exit_code == 1 and "--batch-size" in bad.output


def test_run_takes_the_executor(workflow_file: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["run", str(workflow_file), "--executor", "bogus"])
    assert bad.exit_code == 1 and "executor" in bad.output
    pytest.importorskip("ray")
    ran = runner.invoke(app, ["run", str(workflow_file), "--executor", "ray"])
    assert ran.exit_code == 0, ran.output
    local = workflow_file.parent / "local.yaml"
    local.write_text(WORKFLOW.replace("artifact_path: out", "artifact_path: out-local"))
    assert runner.invoke(app, ["run", str(local)]).exit_code == 0
    ray_rows = gm.DatasetResults(workflow_file.parent / "out" / "cli-wf" / "stage-0-base").load_dataset()
    local_rows = gm.DatasetResults(workflow_file.parent / "out-local" / "cli-wf" / "stage-0-base").load_dataset()
    assert ray_rows.equals(local_rows)  # the same batches, built on Ray workers
