"""Finding 7 of issue 10: a refused connection before the endpoint ever answered fails at once,
in one line naming the model alias and the endpoint; preview never says to resume; models
check says the same as create. Through the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
columns:
  - {name: topic, column_type: sampler, sampler_type: category, params: {values: [a, b]}}
  - {name: text, column_type: llm_text, prompt: "Write about {{ topic }}"}
"""


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    # The timeout only keeps a regression from hanging the suite; max_retries backoffs take ~30 s.
    return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=20)


@pytest.fixture()
def dead_endpoint(tmp_path: Path, clean_environ: Path) -> str:
    """A registry whose model points at a port nothing listens on; returns the endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/v1"
    (clean_environ / "providers.yaml").write_text(f"- name: test\n  endpoint: {endpoint}\n")
    (clean_environ / "models.yaml").write_text("- {alias: writer, model: test-model, provider: test}\n")
    (tmp_path / "c.yaml").write_text(CONFIG.replace("llm_text,", "llm_text, model_alias: writer,"))
    return endpoint


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_preview_never_says_resume(tmp_path: Path, dead_endpoint: str) -> None:
    line = one_error_line(run_cli("preview", "c.yaml", "-n", "3", cwd=tmp_path))
    assert "model alias 'writer'" in line and dead_endpoint in line
    assert "resume" not in line.lower()


def test_create_fails_in_one_line_and_models_check_says_the_same(tmp_path: Path, dead_endpoint: str) -> None:
    created = one_error_line(run_cli("create", "c.yaml", "-n", "4", cwd=tmp_path))
    assert "model alias 'writer'" in created and dead_endpoint in created
    assert "retries" not in created
    checked = run_cli("models", "check", "writer", cwd=tmp_path)
    assert checked.returncode == 1
    reason = created.split("ModelUnreachableError: ", 1)[1]
    assert reason in " ".join(checked.stdout.split())
