"""Configs are data: a 'module:qualname' string resolves only from modules the user allows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config import trust
from gristmill.config.base import import_reference

ROOT = Path(__file__).resolve().parents[1]
EVIL = """\
columns:
  - {name: n, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 6, integer: true}}
  - {name: x, column_type: custom, function: "%s", reads: [n]}
"""


@pytest.fixture(autouse=True)
def clean_trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(trust.ENV_VAR, raising=False)
    trust.reset()
    yield
    trust.reset()


def custom(function: str) -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 6})
            .add_column(name="x", column_type="custom", function=function, reads=["n"])
            .build())


def test_an_unlisted_module_is_refused_with_how_to_allow_it(tmp_path: Path) -> None:
    with gm.Mill(artifact_path=tmp_path) as mill, pytest.raises(gm.ConfigError) as info:
        mill.validate(custom("subprocess:run"))
    message = str(info.value)
    assert "column 'x'" in message and "'subprocess'" in message
    assert "allow_modules('subprocess')" in message and "GRISTMILL_ALLOW_MODULES=subprocess" in message


def test_validate_never_imports_an_unlisted_module(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("open('imported', 'w').write('x')\ndef f(row): return 1\n")
    (tmp_path / "cfg.yaml").write_text(EVIL % "boom:f", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{tmp_path}"}
    env.pop(trust.ENV_VAR, None)
    code = ("import gristmill as gm, sys\n"
            "cfg = gm.DatasetConfig.from_yaml(sys.argv[1])\n"
            "try:\n    gm.Mill(artifact_path='a').validate(cfg)\nexcept gm.ConfigError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cfg.yaml")], cwd=work, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "allow_modules('boom')" in result.stdout, result.stderr
    assert not (work / "imported").exists()


@pytest.mark.parametrize("how", ["api", "env", "directory"])
def test_each_way_of_allowing_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    module = f"mine_helpers_{how}"  # one module per case: sys.modules keeps the first one imported
    (tmp_path / f"{module}.py").write_text("def plus_one(row):\n    return row['n'] + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    if how == "api":
        trust.allow_modules(module)
    elif how == "env":
        monkeypatch.setenv(trust.ENV_VAR, f"other, {module}")
    else:
        trust.allow_directory(tmp_path)
    with gm.Mill(artifact_path=tmp_path / "out") as mill:
        frame = mill.preview(custom(f"{module}:plus_one"), num_records=3)
    assert (frame["x"] == frame["n"] + 1).all()


def test_a_listed_package_allows_its_submodules_only() -> None:
    trust.allow_modules("json")
    assert import_reference("json.decoder:JSONDecoder").__name__ == "JSONDecoder"
    with pytest.raises(gm.ConfigError, match="jsonschema"):
        trust.check_reference("jsonschema:validate")  # a prefix of the name is not its package


def test_an_allowed_directory_does_not_allow_same_named_modules_elsewhere(tmp_path: Path) -> None:
    trust.allow_directory(tmp_path)
    with pytest.raises(gm.ConfigError, match="'os'"):
        trust.check_reference("os:system")


def test_callables_passed_in_python_are_always_fine(tmp_path: Path) -> None:
    import json

    cfg = custom("json:dumps")
    with pytest.raises(gm.ConfigError):
        gm.Mill(artifact_path=tmp_path).validate(cfg)
    cfg = (gm.ConfigBuilder()
           .add_column(name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 6})
           .add_column(name="x", column_type="custom", function=json.dumps, reads=["n"])
           .build())
    with gm.Mill(artifact_path=tmp_path) as mill:
        assert len(mill.preview(cfg, num_records=2)) == 2


def test_builtins_and_registered_implementations_resolve() -> None:
    assert import_reference("gristmill.engine.generators.expression:ExpressionGenerator")
    from gristmill.config.registry import get_registry

    get_registry().add_seed_reader("trusttest", suffixes=(".trusttest",), read="csv:reader", replace=True)
    assert import_reference("csv:reader")  # registered by Python code: a plugin's choice


def test_bad_names_are_refused() -> None:
    with pytest.raises(gm.ConfigError, match="not a module name"):
        trust.allow_modules("my pkg")
