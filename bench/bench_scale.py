"""Executor benchmark: a CPU-bound custom-column dataset, local executor vs Ray; prints JSON.

Run: ``python bench/bench_scale.py [rows]`` (needs the ``gristmill[ray]`` extra).

The dataset: a uniform sampler and a per-row custom column doing ~1 ms of pure-Python work
(``busy_millisecond`` below), in batches of 250 rows. ``local`` builds the batches one after
another in this process; ``ray`` runs them as Ray tasks on a local Ray instance with 2 CPUs
(started before timing: ``ray_start_seconds`` is reported apart). Both runs must write the
same files (compared by sha256). Target: ``speedup`` (ray rows/s over local rows/s) >= 1.7 on
a 2-core machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gristmill as gm

BATCH_SIZE = 250
RAY_CPUS = 2


def busy_millisecond(row: dict[str, Any]) -> int:
    """About 1 ms of pure-Python work per row, deterministic in ``n``."""
    total = int(row["n"])
    for i in range(6_000):
        total = (total * 1_103_515_245 + i) % 2_147_483_648
    return total


def _config() -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 0, "high": 1_000_000, "integer": True})
            .add_column(name="busy", column_type="custom", function="bench_scale:busy_millisecond", reads=["n"])
            .build())


def _timed_create(root: Path, executor: str, rows: int) -> tuple[float, list[str]]:
    run_config = gm.RunConfig(batch_size=BATCH_SIZE, seed=11, show_progress=False, executor=executor)
    with gm.Mill(root, run_config=run_config) as mill:
        start = time.perf_counter()
        results = mill.create(_config(), num_records=rows, dataset_name="busy")
        seconds = time.perf_counter() - start
    return seconds, [batch.sha256 for batch in results.metadata.completed_batches]


def run_scale_bench(rows: int = 10_000) -> dict[str, Any]:
    import ray

    gm.allow_modules("bench_scale")  # the custom column names this file's function
    with tempfile.TemporaryDirectory(prefix="gristmill-bench-scale-") as tmp:
        local_seconds, local_files = _timed_create(Path(tmp) / "local", "local", rows)
        start = time.perf_counter()
        ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        try:
            ray_seconds, ray_files = _timed_create(Path(tmp) / "ray", "ray", rows)
        finally:
            ray.shutdown()
    local_rate, ray_rate = rows / local_seconds, rows / ray_seconds
    return {
        "rows": rows, "batch_size": BATCH_SIZE, "ray_cpus": RAY_CPUS,
        "local": {"seconds": round(local_seconds, 3), "rows_per_s": round(local_rate)},
        "ray": {"seconds": round(ray_seconds, 3), "rows_per_s": round(ray_rate)},
        "ray_start_seconds": round(ray_start, 3),
        "speedup": round(ray_rate / local_rate, 2), "target_speedup": 1.7,
        "same_files": local_files == ray_files,
    }


if __name__ == "__main__":
    print(json.dumps(run_scale_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2))
