"""Finding 8 of issue 10: the CLI shows results. status for a dataset (interrupted distinct from
failed) and for a workflow file (stages not run yet), show/head, export, cache logs, --version,
preview --providers/--models, help without raw markup. Through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import gristmill as gm
from gristmill.testing import LLMTestServer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
columns:
  - {name: n, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 6, integer: true}}
  - {name: label, column_type: expression, expr: "roll {{ n }}"}
"""
LLM_CONFIG = """
columns:
  - {name: topic, column_type: sampler, sampler_type: category, params: {values: [tea, coffee]}}
  - {name: text, column_type: llm_text, prompt: "Write about {{ topic }}"}
"""


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    (tmp_path / "dice.yaml").write_text(CONFIG)
    result = run_cli("create", "dice.yaml", "-n", "7", "--batch-size", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "artifacts" / "dice"


def set_status(directory: Path, status: str, error: str | None = None) -> None:
    """What a run killed mid-way (running) or stopped by an error (failed) leaves in metadata.json."""
    path = directory / "metadata.json"
    meta = json.loads(path.read_text())
    meta.update(status=status, error=error)
    path.write_text(json.dumps(meta))


def test_status_of_a_dataset_tells_complete_interrupted_and_failed_apart(dataset: Path) -> None:
    done = run_cli("status", str(dataset), cwd=dataset.parent)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "7 of 7" in done.stdout and "3 of 3 committed" in done.stdout
    set_status(dataset, "running")
    cut = run_cli("status", str(dataset), cwd=dataset.parent)
    assert "interrupted" in cut.stdout and "failed" not in cut.stdout
    set_status(dataset, "failed", "GenerationError: the function raised")
    failed = run_cli("status", str(dataset), "--json", cwd=dataset.parent)
    data = json.loads(failed.stdout)
    assert data["state"].startswith("failed") and data["error"] == "GenerationError: the function raised"


def test_show_head_and_export(dataset: Path, tmp_path: Path) -> None:
    frame = gm.DatasetResults(dataset).load_dataset()
    shown = run_cli("show", str(dataset), "-n", "2", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "first 2 of 7 rows" in shown.stdout and "row 1" in shown.stdout and "row 2" not in shown.stdout
    assert f"roll {frame['n'][0]}" in shown.stdout
    head = run_cli("head", str(dataset), cwd=tmp_path)
    assert head.returncode == 0 and "first 5 of 7 rows" in head.stdout
    for name in ("out.jsonl", "out.csv", "out.parquet"):
        result = run_cli("export", str(dataset), name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "wrote 7 rows" in result.stdout
    assert pd.read_json(tmp_path / "out.jsonl", lines=True)["label"].tolist() == frame["label"].tolist()
    assert pd.read_csv(tmp_path / "out.csv")["label"].tolist() == frame["label"].tolist()
    assert pd.read_parquet(tmp_path / "out.parquet")["label"].tolist() == frame["label"].tolist()


def test_status_of_a_workflow_file_lists_stages_not_run_yet(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("""
name: chain
artifact_path: out
stages:
  - name: first
    num_records: 4
    config: {columns: [{name: x, column_type: sampler, sampler_type: uniform, params: {low: 0, high: 5}}]}
  - name: second
    config: {columns: [{name: y, column_type: expression, expr: "{{ x }}"}]}
""")
    assert run_cli("run", "wf.yaml", "--target", "first", cwd=tmp_path).returncode == 0
    status = run_cli("status", "wf.yaml", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = {line.split("│")[1].strip(): line for line in status.stdout.splitlines() if line.count("│") > 2}
    assert "completed" in rows["first"] and "not run yet" in rows["second"]
    shown = run_cli("show", "out/chain", "-n", "1", cwd=tmp_path)
    assert "stage 'first'" in shown.stdout and "first 1 of 4 rows" in shown.stdout


def test_cache_logs_show_the_answers(tmp_path: Path, clean_environ: Path) -> None:
    (tmp_path / "llm.yaml").write_text(LLM_CONFIG)
    with LLMTestServer() as server:
        (tmp_path / "providers.yaml").write_text(f"- name: test\n  endpoint: {server.url}\n")
        (tmp_path / "models.yaml").write_text("- {alias: default, model: test-model, provider: test}\n")
        # --providers / --models name the registry files: GRISTMILL_HOME holds none.
        preview = run_cli("preview", "llm.yaml", "-n", "2", "--providers", "providers.yaml",
                          "--models", "models.yaml", cwd=tmp_path)
        assert preview.returncode == 0, preview.stderr
        assert "Echo: Write about" in preview.stdout
        (clean_environ / "providers.yaml").write_text((tmp_path / "providers.yaml").read_text())
        (clean_environ / "models.yaml").write_text((tmp_path / "models.yaml").read_text())
        assert run_cli("create", "llm.yaml", "-n", "3", cwd=tmp_path).returncode == 0
    logs = run_cli("cache", "logs", "artifacts/llm", "-n", "2", "--column", "text", cwd=tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.count("Echo: Write about") == 2 and "text" in logs.stdout
    # One line per answer: when, stage, column, row, prompt, answer, tokens in/out.
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in logs.stdout.splitlines() if "Echo:" in line]
    frame = gm.DatasetResults(tmp_path / "artifacts" / "llm").load_dataset()
    for _when, stage, column, row, prompt, answer, tokens in cells:
        assert (stage, column) == ("-", "text")
        assert prompt == f"Write about {frame['topic'][int(row)]}" and answer == frame["text"][int(row)]
        assert all(int(n) > 0 for n in tokens.split("/"))
    assert len({row for _, _, _, row, *_ in cells}) == 2


def test_version_and_help_without_raw_markup(tmp_path: Path) -> None:
    version = run_cli("--version", cwd=tmp_path)
    assert version.stdout.strip() == f"gristmill {gm.__version__}"
    for command in ([], ["show"], ["preview"], ["cache", "logs"]):
        result = run_cli(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        assert not re.search(r"\[/?(bold|green|red|yellow|cyan|dim)?\]", result.stdout), result.stdout
