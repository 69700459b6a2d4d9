"""The README's examples run as written (the README must never lie)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gristmill.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_python_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    python = blocks("python")
    assert len(python) >= 2
    for block in python:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    assert (tmp_path / "artifacts" / "questions" / "metadata.json").exists()
    out = namespace["out"]
    frame = out.load_dataset()  # type: ignore[attr-defined]
    assert len(frame) == 200 and {"topic", "question", "answer"} <= set(frame.columns)


def test_yaml_example_validates_previews_and_creates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "questions.yaml").write_text(blocks("yaml")[0])
    runner = CliRunner()
    for args in (["validate", "questions.yaml"], ["preview", "questions.yaml", "-n", "5"],
                 ["create", "questions.yaml", "-n", "300", "--resume", "if-possible"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "artifacts" / "questions" / "parquet-files" / "batch_00000.parquet").exists()
