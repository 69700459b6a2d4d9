"""Finding 6 of issue 10: a relative seed path must not make the fingerprint depend on the
working directory. Through the real CLI, and pinned against the digests stored before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import gristmill as gm

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
seed: {source: data/seed.parquet}
columns:
  - {name: b, column_type: expression, expr: "{{ a }}!"}
"""
# Fingerprints gristmill computed before this change: stored datasets must keep them.
LOADED_FROM_ITS_FOLDER = "7405a3a51932526cf481b2d62f7335218f82c1e56a0d910971bcd9628e5b9ca0"
DATAFRAME_SEED = "eec6d35ae60d6791578fde9a49e9d56b0d5f3f31d0b8bf6216450b14a409e8f8"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gristmill.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(tmp_path / "proj" / "data" / "seed.parquet")
    (tmp_path / "proj" / "c.yaml").write_text(CONFIG)
    return tmp_path


def test_a_rerun_from_another_folder_continues_the_dataset(project: Path) -> None:
    art = str(project / "art")
    first = run_cli("create", "c.yaml", "-n", "6", "--artifact-path", art, cwd=project / "proj")
    assert first.returncode == 0, first.stderr
    grown = run_cli("create", "../proj/c.yaml", "-n", "9", "--artifact-path", art, cwd=project / "elsewhere")
    assert grown.returncode == 0, grown.stderr
    assert "not resuming" not in grown.stderr and "seed changed" not in grown.stderr
    assert "generated now: 3 rows" in " ".join(grown.stdout.split())
    assert sorted(p.name for p in (project / "art").iterdir()) == ["c"]  # no fresh sibling


def test_fingerprint_is_the_same_from_any_working_directory(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "proj")
    here = gm.DatasetConfig.from_yaml("c.yaml")
    monkeypatch.chdir(project / "elsewhere")
    there = gm.DatasetConfig.from_yaml("../proj/c.yaml")
    assert here.seed is not None and there.seed is not None and here.seed.source != there.seed.source
    assert here.fingerprint() == there.fingerprint()
    assert gm.ConfigBuilder.from_config(there).build().fingerprint() == here.fingerprint()


def test_a_changed_seed_path_is_still_a_change(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "elsewhere")
    config = gm.DatasetConfig.from_yaml("../proj/c.yaml")
    before = config.fingerprint()
    assert config.seed is not None
    config.seed.source = str(project / "proj" / "data" / "other.parquet")
    assert config.fingerprint() != before


def test_stored_fingerprints_are_unchanged(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "proj")
    assert gm.DatasetConfig.from_yaml("c.yaml").fingerprint() == LOADED_FROM_ITS_FOLDER
    frame_config = (gm.ConfigBuilder().with_seed_dataset(pd.DataFrame({"a": [1, 2, 3]}))
                    .add_column(name="b", column_type="expression", expr="{{ a }}!").build())
    assert frame_config.fingerprint() == DATAFRAME_SEED
