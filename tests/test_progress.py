"""The progress display, read from a real pseudo-terminal: the ``gristmill`` command runs in a
subprocess against the project's test server (with latency), and its terminal output is checked."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import gristmill as gm
from gristmill.config.models import ModelPrice
from gristmill.engine.progress import RichProgress
from gristmill.testing import LLMTestServer

ROOT = Path(__file__).resolve().parents[1]
ROWS = 60
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONFIG = """\
columns:
  - {name: n, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 100, integer: true}}
  - {name: story, column_type: llm_text, model_alias: default, prompt: "A story about {{ n }} BROKEN{{ n % 10 }}"}
  - {name: title, column_type: llm_text, model_alias: default, prompt: "A title for: {{ story }}"}
"""


@pytest.fixture()
def server(clean_environ: Path) -> Iterator[LLMTestServer]:
    """A slow test server named in the models of ``GRISTMILL_HOME`` (with prices); prompts with
    BROKEN0 fail."""
    with LLMTestServer(latency=0.06, fail_marker="BROKEN0") as instance:
        (clean_environ / "providers.yaml").write_text(f"- {{name: test, endpoint: '{instance.url}'}}\n")
        (clean_environ / "models.yaml").write_text(
            "- {alias: default, model: test-model, provider: test, max_parallel_requests: 4,\n"
            "   input_cost_per_million: 1000, output_cost_per_million: 2000}\n")
        yield instance


def in_terminal(args: list[str], cwd: Path) -> str:
    """Run ``args`` with stdin, stdout and stderr on a 200-column pseudo-terminal; everything it
    printed, without escape codes, one screen update per line."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TERM": "xterm-256color", "COLUMNS": "200"}
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=terminal, stdout=terminal, stderr=terminal,
                            start_new_session=True)
    os.close(terminal)
    output = bytearray()
    try:
        while select.select([controller], [], [], 60)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process and every holder of the terminal are gone
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(controller)
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, output.decode(errors="replace")
    return ANSI.sub("", output.decode(errors="replace")).replace("\r", "\n")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gristmill.cli.main", *args]


def rows_shown(text: str, total: int) -> list[int]:
    return [int(k) for k in re.findall(rf"(\d+)/{total} rows", text)]


def last_line(text: str, pattern: str) -> str:
    return [line for line in text.splitlines() if re.search(pattern, line)][-1]


def test_llm_rows_count_up_by_cell_before_the_batch_is_written(server: LLMTestServer, tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    create = cli("create", "cfg.yaml", "-n", str(ROWS), "--batch-size", str(ROWS))  # one batch: one commit
    text = in_terminal(create, tmp_path)

    shown = rows_shown(text, ROWS)
    assert any(0 < k < ROWS for k in shown), text  # moved while the only batch was being built
    assert shown == sorted(shown) and shown[-1] == ROWS
    cells = [int(k) for k in re.findall(rf"(\d+)/{2 * ROWS} cells", text)]
    assert any(0 < k < 2 * ROWS for k in cells) and cells[-1] == 2 * ROWS, text
    assert re.search(r"[1-4] in flight", text), text
    assert re.search(r"[1-9][\d.,]* req/s · [1-9][\d,]* tok/s", text), text
    final = last_line(text, rf"{ROWS}/{ROWS} rows")
    data = gm.DatasetResults(tmp_path / "artifacts" / "cfg").load_dataset()
    failed = sum(any(e["kind"] == "failed" and e["column"] == "story" for e in errors)
                 for errors in data["__errors"] if errors is not None)
    assert failed > 0 and f"0 cached · {failed} failed · 0 retries" in final, final
    tokens = gm.DatasetResults(tmp_path / "artifacts" / "cfg").metadata.usage["default"]
    assert f"cost {(tokens['input_tokens'] * 1000 + tokens['output_tokens'] * 2000) / 1e6:,.4f}" in final, final

    # A changed title prompt starts fresh from the old answers: the stories come from the cache
    # (failed cells were not cached: they are asked again, and now answered).
    server.configure(fail_marker="")
    (tmp_path / "cfg.yaml").write_text(CONFIG.replace("A title for", "Name"))
    again = in_terminal(create, tmp_path)
    final = last_line(again, rf"{ROWS}/{ROWS} rows")
    assert f"{2 * ROWS}/{2 * ROWS} cells" in final and f"{ROWS - failed} cached · 0 failed" in final, final


def test_nothing_is_shown_when_output_is_not_a_terminal(server: LLMTestServer, tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(CONFIG.replace("BROKEN", "fine"))
    piped = subprocess.run(cli("create", "cfg.yaml", "-n", "12"), cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120, check=True)
    assert piped.stderr == ""
    assert piped.stdout.startswith("done: 12 rows") and "rows ·" not in piped.stdout


def test_show_progress_false_keeps_a_terminal_quiet(server: LLMTestServer, tmp_path: Path) -> None:
    script = ("import gristmill as gm; "
              f"config = gm.DatasetConfig.from_yaml({CONFIG.replace('BROKEN', 'fine')!r}); "
              "mill = gm.Mill('artifacts', run_config=gm.RunConfig(show_progress=False)); "
              "mill.create(config, num_records=8); print('created')")
    text = in_terminal([sys.executable, "-c", script], tmp_path)
    assert text.strip() == "created"


WORKFLOW = """\
name: wf
stages:
  - name: people
    num_records: 24
    config:
      columns:
        - {name: n, column_type: sampler, sampler_type: uniform, params: {low: 1, high: 9, integer: true}}
  - name: poems
    depends_on: [people]
    config:
      columns:
        - {name: poem, column_type: llm_text, model_alias: default, prompt: "A poem about {{ n }}"}
  - name: songs
    depends_on: [people]
    config:
      columns:
        - {name: song, column_type: llm_text, model_alias: default, prompt: "A song about {{ n }}"}
"""


def test_a_workflow_shows_one_line_per_stage(server: LLMTestServer, tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    text = in_terminal(cli("run", "wf.yaml"), tmp_path)
    finals: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        if match := re.match(r"(people|poems|songs) .*24/24 rows", line):
            finals[match.group(1)].append(line)
    assert set(finals) == {"people", "poems", "songs"}, text
    assert "in flight" not in finals["people"][-1]  # no model asked: no LLM counters
    for stage in ("poems", "songs"):
        assert "24/24 cells" in finals[stage][-1] and "0 failed" in finals[stage][-1], text

    again = in_terminal(cli("run", "wf.yaml"), tmp_path)
    for stage in ("people", "poems", "songs"):
        assert re.search(rf"^{stage} \(reused\) .*24/24 rows", again, re.M), again


def test_cost_so_far_needs_a_price_for_every_model_asked() -> None:
    usage: dict[str, dict[str, int]] = {"a": {"input_tokens": 0}, "b": {"input_tokens": 0}}
    line = RichProgress()
    line.watch(usage, {"a": price(1.0, 2.0), "b": price(3.0, 4.0)})
    usage["a"].update(input_tokens=1_000_000, output_tokens=500_000, requests=10, cache_hits=3)
    usage["b"].update(output_tokens=250_000, requests=5, failures=1, retries=2, corrections=1)
    shown = str(line)
    assert "cost 3.0000" in shown  # 1 + 1 (a) + 1 (b)
    assert "3 cached · 1 failed · 2 retries · 1 corrections" in shown
    line.watch(usage, {"a": price(1.0, 2.0)})  # b has no price: no partial sum
    assert "cost" not in str(line)


def price(cost_in: float, cost_out: float) -> ModelPrice:
    return ModelPrice(input_cost_per_million=cost_in, output_cost_per_million=cost_out)
