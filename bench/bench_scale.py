"""Executor benchmark: a CPU-bound custom-column dataset, local executor vs Ray; prints JSON.

Run: ``python bench/bench_scale.py [rows]`` (needs the ``gristmill[ray]`` extra).

The dataset: a uniform sampler and a per-row custom column doing ~1 ms of pure-Python work
(``busy_millisecond`` below), in batches of 250 rows. ``local`` builds the batches one after
another in this process; ``ray`` runs them as Ray tasks on a local Ray instance with 2 CPUs
(started before timing: ``ray_start_seconds`` is reported apart). Both runs must write the
same files (compared by sha256). Target: ``speedup`` (ray rows/s over local rows/s) >= 1.7 on
a 2-core machine.

``python bench/bench_scale.py llm [requests]``: an ``llm_text`` stage under Ray (2 workers)
against the test server in its own process, 50 ms latency, a model with
``max_parallel_requests=64`` and the server capping at 64 concurrent requests (429 beyond).
The limit is the cluster's: ``efficiency`` = requests/s over 64 / 0.05 (target >= 0.9), and
``rate_limited`` counts the requests the server saw above the limit (target 0).
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


LLM_LIMIT = 64
LLM_LATENCY = 0.05
LLM_BATCH_SIZE = 1000


def run_llm_scale_bench(requests: int = 20_000) -> dict[str, Any]:
    """The LLM stage under Ray: throughput against the cluster-wide limit, and 429s seen."""
    import ray

    from gristmill.testing import ServerProcess, provider_and_model

    config = (gm.ConfigBuilder()
              .add_column(name="n", column_type="sampler", sampler_type="uniform",
                          params={"low": 0, "high": 1_000_000, "integer": True})
              .add_column(name="text", column_type="llm_text", prompt="Describe item {{ n }}.")
              .build())
    with tempfile.TemporaryDirectory(prefix="gristmill-bench-scale-llm-") as tmp, \
            ServerProcess(latency=LLM_LATENCY, max_concurrent=LLM_LIMIT) as server:
        provider, model = provider_and_model(server.url, max_parallel_requests=LLM_LIMIT)
        ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False)
        try:
            run_config = gm.RunConfig(batch_size=LLM_BATCH_SIZE, seed=11, show_progress=False, executor="ray")
            with gm.Mill(Path(tmp), model_providers=[provider], model_configs=[model], run_config=run_config) as mill:
                warm = mill.create(config, num_records=2 * LLM_BATCH_SIZE, dataset_name="warm")  # workers, actor
                start = time.perf_counter()
                results = mill.create(config, num_records=requests, dataset_name="llm")
                seconds = time.perf_counter() - start
        finally:
            ray.shutdown()
        stats = server.stats()
    warm_requests = warm.run_usage["default"]["requests"]
    rate = (stats["completions"] - warm_requests) / seconds
    return {
        "requests": requests, "batch_size": LLM_BATCH_SIZE, "ray_cpus": RAY_CPUS, "limit": LLM_LIMIT,
        "latency_s": LLM_LATENCY, "seconds": round(seconds, 3), "requests_per_s": round(rate),
        "efficiency": round(rate / (LLM_LIMIT / LLM_LATENCY), 3), "target_efficiency": 0.9,
        "rate_limited": stats["rate_limited"], "max_in_flight": stats["max_in_flight"],
        "run_usage_requests": results.run_usage["default"]["requests"],
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "llm":
        print(json.dumps(run_llm_scale_bench(int(sys.argv[2]) if len(sys.argv) > 2 else 20_000), indent=2))
    else:
        print(json.dumps(run_scale_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2))
