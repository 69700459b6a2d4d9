"""SIGKILL trials: a 3-stage LLM workflow killed at random points, then resumed.

Each trial runs ``torture_workflow.py`` in a subprocess against the test server (its own
process, so its counters outlive every kill), SIGKILLs it once or twice at a point drawn from
``random.Random(seed, trial)`` (after a number of answered requests, or after a wall-clock
delay that may fall in start-up, hand-offs or the final metadata writes), then reruns it to
completion with ``resume="if-possible"``. It checks:

- every stage's output equals the uninterrupted reference run's;
- requests sent over the whole trial minus the reference's (re-paid) <= ``max_parallel_requests``
  per kill: only the answers in flight when the process died are paid twice;
- a further rerun reuses every stage and sends nothing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torture_workflow as tw

from gristmill.testing import ServerProcess

HERE = Path(__file__).resolve().parent
SRC_DIR = HERE.parent.parent / "src"
RUN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Reference:
    requests: int
    seconds: float
    outputs: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(latency=0.01) as instance:
        yield instance


def _requests(server: ServerProcess) -> int:
    return int(server.stats()["requests"])


def _start(server: ServerProcess, root: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC_DIR), str(HERE)])}
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, str(HERE / "torture_workflow.py"), server.url, str(root)],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)


def _finish(proc: subprocess.Popen[bytes], log: Path) -> None:
    code = proc.wait(RUN_TIMEOUT)
    assert code == 0, f"the workflow run failed ({code}): {log.read_text()[-3000:]}"


def _outputs(root: Path, url: str) -> dict[str, pd.DataFrame]:
    """Every stage's output, read through a rerun that must reuse everything."""
    with tw.make_mill(root, url) as mill:
        out = tw.build(mill).run(resume="if-possible")
        assert out.plan is not None
        assert [s.action.value for s in out.plan.stages] == ["reuse"] * len(tw.STAGES), out.plan
        return {name: out.load_stage_output(name) for name in tw.STAGES}


@pytest.fixture(scope="module")
def reference(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("torture-reference")
    before, started = _requests(server), time.monotonic()
    _finish(_start(server, root / "artifacts", root / "stderr.log"), root / "stderr.log")
    seconds = time.monotonic() - started
    sent = _requests(server) - before
    assert sent == tw.REQUESTS_PER_RUN
    outputs = _outputs(root / "artifacts", server.url)
    assert _requests(server) - before == sent
    return Reference(requests=sent, seconds=seconds, outputs=outputs)


def _kill_point(rng: random.Random, reference: Reference, sent: int) -> tuple[str, float]:
    """After a number of this run's requests (within what is left to send), or after a delay."""
    if rng.random() < 0.5:
        return "requests", float(rng.randint(1, max(1, reference.requests - sent - 1)))
    return "seconds", rng.uniform(0.0, reference.seconds * 1.1)


def _run_and_kill(server: ServerProcess, root: Path, log: Path, point: tuple[str, float], base: int) -> bool:
    """Start a run and SIGKILL it at ``point``; False when it finished first."""
    kind, value = point
    proc = _start(server, root, log)
    started = time.monotonic()
    while proc.poll() is None:
        elapsed = time.monotonic() - started
        assert elapsed < RUN_TIMEOUT, "the workflow run made no progress"
        reached = elapsed >= value if kind == "seconds" else _requests(server) - base >= value
        if reached:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    assert proc.returncode == 0, f"the workflow run failed: {log.read_text()[-3000:]}"
    return False


def test_sigkill_trial(trial: int, torture_seed: int, server: ServerProcess, reference: Reference,
                       tmp_path: Path, trial_report: list[dict[str, Any]]) -> None:
    rng = random.Random(f"{torture_seed}/{trial}")
    root, log = tmp_path / "artifacts", tmp_path / "stderr.log"
    started, base = time.monotonic(), _requests(server)
    kill_points: list[str] = []
    for _ in range(rng.choice((1, 1, 2))):
        run_base = _requests(server)
        kind, value = _kill_point(rng, reference, run_base - base)
        if _run_and_kill(server, root, log, (kind, value), run_base):
            kill_points.append(f"{kind}>={value:.2f}" if kind == "seconds" else f"requests>={value:.0f}")
    _finish(_start(server, root, log), log)
    repaid = _requests(server) - base - reference.requests
    outputs = _outputs(root, server.url)
    identical = all(outputs[name].equals(reference.outputs[name]) for name in tw.STAGES)
    bound = tw.PARALLEL * len(kill_points)
    trial_report.append({"trial": trial, "seed": torture_seed, "kills": len(kill_points), "kill_points": kill_points,
                         "identical": identical, "repaid": repaid, "bound": bound,
                         "seconds": round(time.monotonic() - started, 2)})
    for name in tw.STAGES:
        pd.testing.assert_frame_equal(outputs[name], reference.outputs[name], obj=f"stage {name!r}")
    assert 0 <= repaid <= bound, f"re-paid {repaid} requests after {len(kill_points)} kill(s) at {kill_points}"
