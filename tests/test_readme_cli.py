"""Every ``gristmill`` command of the README, run in order as written, as a real subprocess."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def commands() -> list[list[str]]:
    """The README's shell lines that run gristmill, comments dropped (``make`` lines are not ours)."""
    text = README.read_text(encoding="utf-8")
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.strip().startswith("gristmill ")]


def test_every_readme_command_runs_in_order(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    (tmp_path / "questions.yaml").write_text(re.findall(r"```yaml\n(.*?)```", text, re.S)[0])
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("text_to_sql"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    ran = []
    for argv in commands():
        result = subprocess.run([sys.executable, "-m", "gristmill.cli.main", *argv[1:]], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
        ran.append(argv[1])
    assert ran == ["validate", "preview", "create", "plan", "run", "status"]
    assert (tmp_path / "demo-artifacts" / "greeting-cards" / "workflow-metadata.json").is_file()
