"""Shared fixtures: an isolated environment for every test, a Mill, a small config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config import trust

# Provider keys a developer may have exported; a test must never reach a real endpoint with them.
_SECRET_SUFFIXES = ("_API_KEY", "_API_TOKEN")
_TEST_MODULES = ("tests", "slowfns", "test_fingerprint", "test_config", "test_config_fuzz", "test_workflow_crash",
                 "test_workflow_seeded", "test_workflow_run", "wfcli_callbacks", "workflow_demo")


@pytest.fixture(autouse=True)
def clean_environ(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``GRISTMILL_HOME`` at an empty directory and drop provider API keys."""
    home = tmp_path_factory.mktemp("gristmill-home")
    monkeypatch.setenv("GRISTMILL_HOME", str(home))
    # Configs name callables only from allowed modules (docs/trust.md); the suite allows its own
    # helper modules the way a user allows theirs. Subprocesses inherit the variable.
    monkeypatch.setenv(trust.ENV_VAR, ",".join(_TEST_MODULES))
    trust.reset()
    for name in list(os.environ):
        if name.endswith(_SECRET_SUFFIXES):
            monkeypatch.delenv(name)
    return home


@pytest.fixture()
def mill(tmp_path: Path) -> Iterator[gm.Mill]:
    """A Mill writing under ``tmp_path / "artifacts"`` with a fixed seed and small batches."""
    with gm.Mill(tmp_path / "artifacts",
                 run_config=gm.RunConfig(batch_size=50, seed=123, show_progress=False)) as instance:
        yield instance


@pytest.fixture()
def basic_config() -> gm.DatasetConfig:
    """A sampler, an expression over it, and a uuid."""
    return (gm.ConfigBuilder()
            .add_column(name="id", column_type="sampler", sampler_type="uuid", params={"short_form": True})
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 1, "high": 6, "integer": True})
            .add_column(name="label", column_type="expression", expr="roll {{ n }}")
            .build())
