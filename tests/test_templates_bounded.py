"""Templates are bounded per cell in time and output size, fail naming the column and the limit,
and Ctrl-C during a slow render exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.engine.sandbox import TemplateLimits
from gristmill.engine.templates import render_column, render_one

ROOT = Path(__file__).resolve().parents[1]
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
DEEP = "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}"


def test_nested_loops_with_empty_bodies_stop_at_the_time_limit() -> None:
    started = time.monotonic()
    with pytest.raises(gm.GenerationError, match=r"time limit of 0.2 s per cell") as info:
        render_one(NESTED_LOOPS, {}, limits=TemplateLimits(time_limit=0.2))
    assert time.monotonic() - started < 2
    assert "row 0" in str(info.value)


@pytest.mark.parametrize(("template", "what"), [
    ("{{ lipsum(n=10000000) }}", "lipsum(n=10000000"),
    ("{{ 'x' * 1000000000 }}", "a repeated value"),
    ("{{ [1] * 1000000000 }}", "a repeated value"),
    ("{{ 10 ** 1000000000 }}", "a power"),
    ("{{ 'ab'|center(1000000000) }}", "a width"),
    ("{% for i in range(100000) %}{{ i }}{% endfor %}" * 3, "output"),
    ("{{ range(100000)|join('-') ~ range(100000)|join('-') ~ range(100000)|join('-') }}", "output"),
])
def test_oversized_output_is_refused_before_it_is_built(template: str, what: str) -> None:
    started = time.monotonic()
    with pytest.raises(gm.GenerationError, match="output limit of 1,000,000 characters per cell") as info:
        render_one(template, {})
    assert what in str(info.value)
    assert time.monotonic() - started < 2


def test_the_limits_are_configurable_per_render() -> None:
    template = "{{ 'x' * n }}"
    assert render_one(template, {"n": 11}, limits=TemplateLimits(output_limit=11)) == "x" * 11
    with pytest.raises(gm.GenerationError, match="output limit of 10 characters"):
        render_one(template, {"n": 11}, limits=TemplateLimits(output_limit=10))


def test_plain_substitutions_count_towards_the_output_limit_too() -> None:
    values = {"text": ["short", "y" * 50]}
    out = render_column("{{ text }}", 2, values.__getitem__, limits=TemplateLimits(output_limit=50))
    assert out == ["short", "y" * 50]
    with pytest.raises(gm.GenerationError, match="row 1: output"):
        render_column("{{ text }}", 2, values.__getitem__, limits=TemplateLimits(output_limit=49))


def test_limits_come_from_the_run_config_with_defaults() -> None:
    assert TemplateLimits.from_run_config(gm.RunConfig()) == TemplateLimits(time_limit=1.0, output_limit=1_000_000)
    run = gm.RunConfig(template_time_limit=5, template_output_limit=20)
    assert TemplateLimits.from_run_config(run) == TemplateLimits(time_limit=5.0, output_limit=20)
    with pytest.raises(gm.ConfigError, match="template_time_limit"):
        gm.RunConfig(template_time_limit=0)


def test_ordinary_templates_render_as_before() -> None:
    template = ("{% for i in range(3) %}{{ loop.index }}{% endfor %}|{{ [1, 2]|map('string')|join(',') }}|"
                "{{ 'a'|center(5) }}|{{ 'ab' * 2 }}|{{ 2 ** 10 }}|{{ lipsum(n=1, html=False)|length > 0 }}")
    assert render_one(template, {}) == "123|1,2|  a  |abab|1024|True"


def test_recursive_macros_fail_the_cell_not_the_process() -> None:
    with pytest.raises(gm.GenerationError, match="RecursionError"):
        render_one("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", {})


def test_an_expression_column_over_a_limit_names_the_column(tmp_path: Path) -> None:
    cfg = (gm.ConfigBuilder()
           .add_column(name="n", column_type="sampler", sampler_type="uniform", params={"low": 1, "high": 2})
           .add_column(name="big", column_type="expression", expr="{{ lipsum(n=10000000) }}{{ n }}")
           .build())
    with gm.Mill(artifact_path=tmp_path) as mill, pytest.raises(gm.GenerationError) as info:
        mill.preview(cfg, num_records=2)
    assert "expression column 'big'" in str(info.value)
    assert "output limit of 1,000,000 characters" in str(info.value)


@pytest.mark.parametrize("column", [
    {"column_type": "expression", "expr": DEEP},
    {"column_type": "llm_text", "model_alias": "m", "prompt": DEEP},
])
def test_deeply_nested_templates_are_config_errors(column: dict[str, str]) -> None:
    with pytest.raises(gm.ConfigError, match="nested too deeply") as info:
        gm.ConfigBuilder().add_column(name="deep", **column)
    assert len(str(info.value)) < 400  # the 4,000-character template is shortened
    with pytest.raises(gm.ConfigError, match="nested too deeply"):
        render_one(DEEP, {})


SLOW_CONFIG = f"""\
columns:
  - name: n
    column_type: sampler
    sampler_type: uniform
    params: {{low: 1, high: 6, integer: true}}
  - name: slow
    column_type: expression
    expr: "{NESTED_LOOPS}{{{{ n }}}}"
"""

# Runs the real CLI with a chosen default time limit (RunConfig has no CLI flag for it).
DRIVER = """\
import pathlib
import sys
import gristmill.engine.sandbox as sandbox
import gristmill.engine.templates as templates
sandbox.DEFAULT_TIME_LIMIT = float(sys.argv.pop(1))
original = templates.render_column
def render_column(*args, **kwargs):  # tells the test that rendering has started
    pathlib.Path("rendering").touch()
    return original(*args, **kwargs)
templates.render_column = render_column  # bound before the expression generator imports it
from gristmill.cli.main import app
app(prog_name="gristmill")
"""


def interrupt_preview(tmp_path: Path, time_limit: float) -> subprocess.CompletedProcess[str]:
    (tmp_path / "slow.yaml").write_text(SLOW_CONFIG, encoding="utf-8")
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "driver.py", str(time_limit), "preview", "slow.yaml", "-n", "3"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a child of a background shell job would otherwise inherit SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (tmp_path / "rendering").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the first cell's render, well before its time limit
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_slow_render_exits_130(tmp_path: Path) -> None:
    result = interrupt_preview(tmp_path, time_limit=3.0)
    assert "Cannot close a running event loop" not in result.stderr
    assert result.returncode == 130, result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_render_longer_than_the_close_timeout_exits_130(tmp_path: Path) -> None:
    result = interrupt_preview(tmp_path, time_limit=30.0)
    assert "Cannot close a running event loop" not in result.stderr
    assert result.returncode == 130, result.stderr
