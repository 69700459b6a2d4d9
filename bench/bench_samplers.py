"""Micro benchmark of the sampler layer: rows per second of ``sample_columns`` alone.

Run: ``PYTHONPATH=src python bench/bench_samplers.py [rows]``; prints JSON.
Targets: simple samplers far above 100k rows/s (aim 1M+), person >= 200k rows/s, since the full
pipeline (expressions + parquet) must reach 100k rows/s (20k rows/s with person).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from gristmill.config.samplers import SamplerColumn
from gristmill.sampling import person_pools, sample_columns

SIMPLE_COLUMNS = [
    SamplerColumn(name="category", sampler_type="category",
                  params={"values": ["books", "toys", "food", "garden"], "weights": [4, 3, 2, 1]}),
    SamplerColumn(name="price", sampler_type="uniform", params={"low": 1, "high": 100, "decimal_places": 2}),
    SamplerColumn(name="score", sampler_type="gaussian", params={"mean": 50, "stddev": 10}),
    SamplerColumn(name="id", sampler_type="uuid", params={}),
    SamplerColumn(name="created", sampler_type="datetime",
                  params={"start": "2020-01-01", "end": "2024-12-31", "unit": "s"}),
]
PERSON_COLUMNS = [SamplerColumn(name="person", sampler_type="person", params={})]


def _best_seconds(run: Callable[[int], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` runs (batch index varies, so nothing is cached between runs)."""
    best = float("inf")
    for batch_index in range(repeats):
        start = time.perf_counter()
        run(batch_index)
        best = min(best, time.perf_counter() - start)
    return best


def _rate(columns: list[SamplerColumn], n: int, repeats: int) -> dict[str, float]:
    seconds = _best_seconds(
        lambda batch: sample_columns(columns, num_rows=n, run_seed=7, batch_index=batch), repeats)
    return {"seconds": round(seconds, 4), "rows_per_s": round(n / seconds)}


def run_sampler_bench(n: int = 100_000, *, repeats: int = 5) -> dict[str, Any]:
    """Time ``sample_columns`` for ``n`` rows: five simple columns together, each alone, and person."""
    start = time.perf_counter()
    person_pools("en_US")  # built once per process; reported apart from the per-batch cost
    pool_seconds = time.perf_counter() - start
    return {
        "rows": n,
        "simple_columns": _rate(SIMPLE_COLUMNS, n, repeats),
        "per_column": {column.name: _rate([column], n, repeats) for column in SIMPLE_COLUMNS},
        "person": _rate(PERSON_COLUMNS, n, repeats),
        "person_pool_build_seconds": round(pool_seconds, 3),
    }


if __name__ == "__main__":
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(run_sampler_bench(rows), indent=2))
