"""Finding 5 of issue 10: ``plan`` runs every check ``run`` runs; ``validate`` knows struct fields
and workflow files. Through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gristmill as gm
from gristmill import sampling

ROOT = Path(__file__).resolve().parents[1]

BROKEN_WORKFLOW = """
name: broken
artifact_path: out
stages:
  - name: first
    num_records: 4
    config:
      columns:
        - {name: x, column_type: sampler, sampler_type: uniform, params: {low: 0, high: 5}}
  - name: second
    config:
      columns:
        - {name: y, column_type: expression, expr: "{{ z }}"}
"""

PERSON_CONFIG = """
columns:
  - {name: who, column_type: sampler, sampler_type: person, params: {}}
  - {name: hello, column_type: expression, expr: "Hi {{ who.firstname }}"}
"""


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_plan_refuses_what_run_refuses(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(BROKEN_WORKFLOW)
    plan = run_cli("plan", "wf.yaml", cwd=tmp_path)
    assert plan.returncode == 1, plan.stdout
    assert "stage 'second'" in plan.stderr and "references 'z', which is not a column" in plan.stderr
    assert not (tmp_path / "out").exists()  # plan wrote nothing
    run = run_cli("run", "wf.yaml", cwd=tmp_path)
    assert run.returncode == 1 and "references 'z', which is not a column" in run.stderr


def test_workflow_plan_in_python_raises_the_run_error(tmp_path: Path) -> None:
    valid = gm.ConfigBuilder().add_column(name="x", column_type="sampler", sampler_type="uniform",
                                          params={"low": 0, "high": 5}).build()
    broken = gm.ConfigBuilder().add_column(name="y", column_type="expression", expr="{{ z }}").build()
    with gm.Mill(tmp_path) as mill:
        wf = mill.compose_workflow("w").add_stage("first", valid, num_records=3).add_stage("second", broken)
        with pytest.raises(gm.ConfigError, match="stage 'second'.*references 'z'"):
            wf.plan()


def test_validate_names_a_missing_person_field_and_lists_the_real_ones(tmp_path: Path) -> None:
    (tmp_path / "people.yaml").write_text(PERSON_CONFIG)
    result = run_cli("validate", "people.yaml", cwd=tmp_path)
    assert result.returncode == 1
    line = " ".join(result.stderr.split())
    assert "who.firstname" in line and "did you mean who.first_name?" in line
    assert f"its fields: {', '.join(sampling.PERSON_FIELDS)}" in line


@pytest.mark.parametrize(("template", "ok"), [
    ("{{ who['first_name'] }}", True),
    ("{% for who in [1] %}{{ who.real }}{% endfor %}", True),  # a loop variable, not the column
    ("{{ who.items() | list | length }}", True),
    ("{{ who['surname'] }}", False),
])
def test_struct_field_reads(template: str, ok: bool, tmp_path: Path) -> None:
    config = (gm.ConfigBuilder()
              .add_column(name="who", column_type="sampler", sampler_type="person", params={})
              .add_column(name="t", column_type="expression", expr=template).build())
    with gm.Mill(tmp_path) as mill:
        if ok:
            mill.validate(config)
        else:
            with pytest.raises(gm.ConfigError, match="no field 'surname'"):
                mill.validate(config)


def test_validate_says_a_workflow_file_is_one_and_checks_its_stages(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(BROKEN_WORKFLOW)
    broken = run_cli("validate", "wf.yaml", cwd=tmp_path)
    assert broken.returncode == 1
    assert "is a workflow file" in broken.stdout and "references 'z'" in broken.stderr
    (tmp_path / "wf.yaml").write_text(BROKEN_WORKFLOW.replace("{{ z }}", "{{ x }}"))
    fixed = run_cli("validate", "wf.yaml", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "valid: workflow 'broken', 2 stages" in fixed.stdout
