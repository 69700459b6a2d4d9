"""Custom-column functions for tests/test_ray*.py and bench/bench_scale.py.

Each reads the seed column ``row`` (the dataset row index) so it knows its batch; test configs
name them as ``ray_slowfns:<name>``, allowed with ``gm.allow_modules("ray_slowfns")``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

BATCH_SIZE = 5  # the batch size of the test configs, so a function knows the batch of its row


def mixed(row: dict[str, Any]) -> int:
    """Deterministic in its inputs: the same row gives the same value in any process."""
    return int(row["row"]) * 31 + int(row["n"]) + len(str(row["label"]))


def first_batch_last(row: dict[str, Any]) -> int:
    """Slow on batch 0 only, so with two workers batch 0 finishes after later batches."""
    if int(row["row"]) // BATCH_SIZE == 0:
        time.sleep(0.3)
    return int(row["row"]) * 2


def dies_once_in_batch_2(row: dict[str, Any]) -> int:
    """On the first row of batch 2, once (a marker file in the ``marker`` directory), SIGKILL the
    worker process building it: Ray must retry the batch on another worker."""
    if int(row["row"]) == 2 * BATCH_SIZE:
        marker = Path(row["marker"]) / "killed-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    return int(row["row"]) * 3 + int(row["n"])


def busy_millisecond(row: dict[str, Any]) -> int:
    """About 1 ms of pure-Python work per row (bench/bench_scale.py), deterministic."""
    total = int(row["n"])
    for i in range(6_000):
        total = (total * 1_103_515_245 + i) % 2_147_483_648
    return total


def dies_soon_once(row: dict[str, Any]) -> int:
    """On row ``kill_row``, once (a marker file in the ``marker`` directory): SIGKILL this worker
    ``kill_after`` seconds later, while the requests of the LLM column after this one are in flight."""
    if int(row["row"]) == int(row["kill_row"]):
        marker = Path(row["marker"]) / "killed-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            threading.Timer(float(row["kill_after"]), os.kill, (os.getpid(), signal.SIGKILL)).start()
    return int(row["row"]) % 7


def fails_on_fail_row(frame: Any) -> list[int]:
    """Batch mode: raises when the batch holds row ``fail_row``, after the columns it reads were built."""
    if bool((frame["row"] == frame["fail_row"]).any()):
        raise ValueError(f"planned failure on row {int(frame['fail_row'].iloc[0])}")
    return [int(row) % 7 for row in frame["row"]]
