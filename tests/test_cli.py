"""The ``gristmill`` command, run as a real subprocess: create, preview, validate and user errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gristmill.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "products.yaml"

CONFIG = """
columns:
  - {name: id, column_type: sampler, sampler_type: uuid, params: {short_form: true}}
  - name: size
    column_type: sampler
    sampler_type: category
    params: {values: [small, medium, large]}
  - {name: greeting, column_type: expression, expr: "{{ size }} item from {{ who }}"}
seed:
  source: people.csv
"""

BAD_CONFIG = """
columns:
  - name: price
    column_type: sampler
    sampler_type: uniform
    params: {low: 10, high: 1}
"""


def run_cli(*args: str, cwd: Path, columns: int = 100) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A config with a seed file beside it, and a separate working directory to run from."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "items.yaml").write_text(CONFIG, encoding="utf-8")
    pd.DataFrame({"who": ["Ann", "Bo", "Cy"]}).to_csv(configs / "people.csv", index=False)
    (configs / "bad.yaml").write_text(BAD_CONFIG, encoding="utf-8")
    (tmp_path / "work").mkdir()
    return tmp_path


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    import gristmill

    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gristmill {gristmill.__version__}"


def test_validate_reports_the_columns_and_fingerprint(project: Path) -> None:
    result = run_cli("validate", str(project / "configs" / "items.yaml"), cwd=project / "work")
    assert result.returncode == 0, result.stderr
    assert "valid: 3 columns, fingerprint" in result.stdout
    assert result.stderr == ""


def test_preview_prints_a_table_and_writes_nothing(project: Path) -> None:
    result = run_cli("preview", str(project / "configs" / "items.yaml"), "-n", "3", "--seed", "1",
                     cwd=project / "work")
    assert result.returncode == 0, result.stderr
    for header in ("id", "size", "greeting", "who"):
        assert header in result.stdout
    assert "item from Ann" in result.stdout
    assert "item from Cy" in result.stdout
    assert list((project / "work").iterdir()) == []


def test_create_writes_the_dataset_and_resumes_as_a_no_op(project: Path) -> None:
    args = ["create", str(project / "configs" / "items.yaml"), "-n", "25", "--name", "things", "--artifact-path",
            "out", "--batch-size", "10", "--seed", "7"]
    first = run_cli(*args, cwd=project / "work")
    assert first.returncode == 0, first.stderr
    assert "done: 25 rows in 3 batch files" in first.stdout
    files = sorted((project / "work" / "out" / "things" / "parquet-files").glob("*.parquet"))
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [10, 10, 5]
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert frame["who"].tolist() == ["Ann", "Bo", "Cy"] * 8 + ["Ann"]
    assert all(g == f"{s} item from {w}" for g, s, w in zip(frame["greeting"], frame["size"], frame["who"],
                                                           strict=True))
    before = {f: f.stat().st_mtime_ns for f in files}

    again = run_cli(*args, "--resume", "if-possible", cwd=project / "work")
    assert again.returncode == 0, again.stderr
    assert "done: 25 rows" in again.stdout
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert sorted(p.name for p in (project / "work" / "out").iterdir()) == ["things"]


def test_create_defaults_the_name_to_the_config_stem(project: Path) -> None:
    result = run_cli("create", str(project / "configs" / "items.yaml"), "-n", "3", cwd=project / "work")
    assert result.returncode == 0, result.stderr
    assert (project / "work" / "artifacts" / "items" / "metadata.json").is_file()


def test_example_config_with_a_custom_function_beside_it(tmp_path: Path) -> None:
    result = run_cli("create", str(EXAMPLE), "-n", "20", "--artifact-path", "out", "--batch-size", "10",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    frame = pd.read_parquet(tmp_path / "out" / "products" / "parquet-files")
    assert len(frame) == 20
    assert set(frame["price_band"]) <= {"budget", "mid", "premium"}


@pytest.mark.parametrize(("args", "words"), [
    (["validate", "configs/bad.yaml"], ["low (10.0) must not exceed high (1.0)", "columns[0]"]),
    (["create", "configs/bad.yaml", "-n", "5"], ["low (10.0) must not exceed high (1.0)"]),
    (["preview", "configs/missing.yaml"], ["missing.yaml", "does not exist"]),
    (["create", "configs/items.yaml", "-n", "0"], ["num_records must be a positive integer"]),
    (["create", "configs/items.yaml", "-n", "5", "--resume", "always"], ["ResumeError", "no dataset to resume"]),
    (["create", "configs/items.yaml", "-n", "5", "--batch-size", "0"], ["--batch-size", "greater than or equal to 1"]),
    (["create", "configs/items.yaml", "-n", "5", "--artifact-path", "configs/items.yaml"],
     ["ArtifactError", "cannot create", "writable artifact path"]),
])
def test_user_errors_exit_1_with_one_line_and_no_traceback(project: Path, args: list[str],
                                                           words: list[str]) -> None:
    result = run_cli(*args, cwd=project)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word.lower() in lines[0].lower()


def test_long_errors_stay_on_one_line_in_a_narrow_terminal(project: Path) -> None:
    broken = project / "configs" / "broken.yaml"
    broken.write_text("columns:\n  - name: [unclosed\n", encoding="utf-8")
    result = run_cli("validate", str(broken), cwd=project, columns=40)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "broken.yaml" in result.stderr


def test_debug_shows_the_traceback(project: Path) -> None:
    result = run_cli("validate", "configs/bad.yaml", "--debug", cwd=project)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "ConfigError" in result.stderr


def test_cli_runner_in_process(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "work")
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(project / "configs" / "items.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "valid: 3 columns" in ok.output
    bad = runner.invoke(app, ["validate", str(project / "configs" / "bad.yaml")])
    assert bad.exit_code == 1
    assert bad.exception is None or isinstance(bad.exception, SystemExit)


def test_schema_prints_every_registered_column_type() -> None:
    import json as json_module

    from typer.testing import CliRunner

    from gristmill.cli.main import app as cli_app

    result = CliRunner().invoke(cli_app, ["schema"])
    assert result.exit_code == 0, result.output
    text = json_module.dumps(json_module.loads(result.output))
    for column_type in ("sampler", "expression", "custom", "llm_text", "llm_structured", "llm_judge", "llm_code"):
        assert f'"{column_type}"' in text
