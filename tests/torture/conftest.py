"""The torture suite: SIGKILL trials and a table of damaged stored state.

Not part of the default ``pytest -q`` (minutes, subprocesses, a server process): its tests are
collected only when ``GRISTMILL_TORTURE=1`` is set or ``--torture-trials`` is given, e.g.::

    GRISTMILL_TORTURE=1 .venv/bin/python -m pytest -q tests/torture --torture-trials 6 --torture-seed 1

``--torture-trials`` / ``--torture-seed`` are registered here, so they exist when
``tests/torture`` is on the command line (pytest reads the options of the conftests of the
paths it is given); ``GRISTMILL_TORTURE_TRIALS`` / ``GRISTMILL_TORTURE_SEED`` work everywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ENABLE_ENV = "GRISTMILL_TORTURE"
REPORT = pytest.StashKey[list[dict[str, Any]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torture", "gristmill torture suite (tests/torture)")
    group.addoption("--torture-trials", type=int, default=None,
                    help="SIGKILL trials to run (default: $GRISTMILL_TORTURE_TRIALS or 4); enables the suite")
    group.addoption("--torture-seed", type=int, default=None,
                    help="seed of the kill points (default: $GRISTMILL_TORTURE_SEED or 0)")


def _option(config: pytest.Config, name: str) -> int | None:
    try:
        value = config.getoption(name)
    except ValueError:  # this conftest was not an initial one: its options are not registered
        return None
    return value if isinstance(value, int) else None


def torture_enabled(config: pytest.Config) -> bool:
    return os.environ.get(ENABLE_ENV) == "1" or _option(config, "--torture-trials") is not None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # Only files below this directory reach this hook; returning None leaves the decision to others.
    if collection_path.suffix == ".py" and not torture_enabled(config):
        return True
    return None


@pytest.fixture(scope="session")
def torture_seed(pytestconfig: pytest.Config) -> int:
    value = _option(pytestconfig, "--torture-seed")
    return value if value is not None else int(os.environ.get("GRISTMILL_TORTURE_SEED", "0"))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "trial" in metafunc.fixturenames:
        value = _option(metafunc.config, "--torture-trials")
        trials = value if value is not None else int(os.environ.get("GRISTMILL_TORTURE_TRIALS", "4"))
        metafunc.parametrize("trial", range(trials))


@pytest.fixture(scope="session")
def trial_report(pytestconfig: pytest.Config) -> list[dict[str, Any]]:
    """Each SIGKILL trial appends its figures here; the terminal summary prints them."""
    return pytestconfig.stash[REPORT]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    trials = config.stash.get(REPORT, [])
    if not trials:
        return
    terminalreporter.section("torture: SIGKILL trials")
    for t in trials:
        terminalreporter.write_line(
            f"trial {t['trial']}: kills={t['kills']} ({', '.join(t['kill_points']) or 'none'}) "
            f"identical={t['identical']} re-paid={t['repaid']} bound={t['bound']} seconds={t['seconds']}")
    repaid = [t["repaid"] for t in trials]
    summary = {"trials": len(trials), "identical": sum(t["identical"] for t in trials),
               "kills": sum(t["kills"] for t in trials), "max_repaid": max(repaid),
               "mean_repaid": round(sum(repaid) / len(repaid), 2),
               "seed": trials[0]["seed"], "seconds": round(sum(t["seconds"] for t in trials), 1)}
    terminalreporter.write_line(json.dumps(summary, sort_keys=True))
