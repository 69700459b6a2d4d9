"""Sampler and pipeline benchmark; prints JSON.

Run: ``python bench/bench_samplers.py [rows]`` (``make bench``).

- ``pipeline``: ``Mill.create`` of 100k rows (category, uniform price with 2 decimals,
  gaussian score, uuid, datetime, expression ``"{{ category }}-{{ price }}"``), then the
  same plus a person column and an expression on the person's name. Each is compared with a
  baseline measured in the same run: the same columns made with bare numpy and written with
  pyarrow, the physical limit. Targets: >= 100,000 rows/s (>= 20,000 with person), within 3x
  of the baseline.
- ``peak_rss_1m_rows_mb``: peak RSS of a fresh process creating 1M rows (target < 400 MB).
- ``samplers``: ``sample_columns`` alone (no expressions, no parquet).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gristmill.config.samplers import SamplerColumn
from gristmill.sampling import PERSON_FIELDS, person_pools, sample_columns

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



PIPELINE_BATCH_SIZE = 10_000


def pipeline_config(*, person: bool) -> Any:
    import gristmill as gm

    builder = gm.ConfigBuilder()
    for column in SIMPLE_COLUMNS:
        builder.add_column(column)
    builder.add_column(name="label", column_type="expression", expr="{{ category }}-{{ price }}")
    if person:
        builder.add_column(name="person", column_type="sampler", sampler_type="person", params={})
        builder.add_column(name="greeting", column_type="expression",
                           expr="Dear {{ person.first_name }} {{ person.last_name }}")
    return builder.build()


def numpy_baseline(n: int, out_dir: Path, *, person: bool, batch_size: int = PIPELINE_BATCH_SIZE) -> float:
    """Seconds to make the same columns with bare numpy and write them with pyarrow."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pools = person_pools("en_US") if person else None
    start = time.perf_counter()
    for index, offset in enumerate(range(0, n, batch_size)):
        rows = min(batch_size, n - offset)
        category = np.array(["books", "toys", "food", "garden"], dtype=object)[
            rng.choice(4, size=rows, p=[0.4, 0.3, 0.2, 0.1])]
        price = np.round(rng.uniform(1, 100, rows), 2)
        columns = {
            "category": category, "price": price, "score": rng.normal(50, 10, rows),
            "id": _hex_ids(rng.bytes(16 * rows)),
            "created": rng.integers(1577836800, 1735603200, rows).astype("datetime64[s]"),
            "label": [f"{c}-{p}" for c, p in zip(category, price.tolist(), strict=True)],
        }
        if pools is not None:
            columns["person"], columns["greeting"] = _baseline_person(pools, rows, rng)
        pq.write_table(pa.table(columns), out_dir / f"batch_{index:05d}.parquet", compression="zstd")
    return time.perf_counter() - start


def _baseline_person(pools: Any, rows: int, rng: Any) -> tuple[Any, list[str]]:
    """The same ten person fields, taken from the same precomputed pools with plain array takes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    first = pools.first_names.take(pa.array(rng.integers(0, len(pools.first_names), rows)))
    last = pools.last_names.take(pa.array(rng.integers(0, len(pools.last_names), rows)))
    place = pa.array(rng.integers(0, len(pools.cities), rows))
    ages = rng.integers(18, 90, rows)
    email = pc.binary_join_element_wise(pc.utf8_lower(first), pc.utf8_lower(last), "@example.com", ".")
    phone = pc.cast(pa.array(rng.integers(2_000_000_000, 9_999_999_999, rows)), pa.string())
    birth = pa.array((np.datetime64("2025-01-01") - ages * 365).astype("datetime64[D]"), type=pa.date32())
    fields = [first, last, pa.array(np.where(rng.random(rows) < 0.5, "Male", "Female")), pa.array(ages), birth,
              pools.cities.take(place), pools.states.take(place), pools.zipcodes.take(place), email, phone]
    struct = pa.StructArray.from_arrays(fields, names=list(PERSON_FIELDS))
    greeting = [f"Dear {f} {s}" for f, s in zip(first.to_pylist(), last.to_pylist(), strict=True)]
    return struct, greeting


def _hex_ids(raw: bytes) -> list[str]:
    text = raw.hex()
    return [text[i:i + 32] for i in range(0, len(text), 32)]


def gristmill_pipeline(n: int, out_dir: Path, *, person: bool, batch_size: int = PIPELINE_BATCH_SIZE) -> float:
    """Seconds for ``Mill.create`` of ``n`` rows of the pipeline config."""
    import gristmill as gm

    config = pipeline_config(person=person)
    mill = gm.Mill(out_dir, run_config=gm.RunConfig(batch_size=batch_size, seed=1, show_progress=False))
    start = time.perf_counter()
    mill.create(config, num_records=n, dataset_name="bench")
    elapsed = time.perf_counter() - start
    mill.close()
    return elapsed


def pipeline_bench(n: int, *, person: bool, repeats: int = 3, batch_size: int = PIPELINE_BATCH_SIZE
                   ) -> dict[str, Any]:
    if person:
        person_pools("en_US")  # per-process setup, not per-row cost
    best_base, best_mill = float("inf"), float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            best_base = min(best_base, numpy_baseline(n, Path(tmp) / f"base{i}", person=person,
                                                      batch_size=batch_size))
            best_mill = min(best_mill, gristmill_pipeline(n, Path(tmp) / f"mill{i}", person=person,
                                                          batch_size=batch_size))
    return {
        "rows": n,
        "batch_size": batch_size,
        "gristmill_rows_per_s": round(n / best_mill),
        "numpy_pyarrow_baseline_rows_per_s": round(n / best_base),
        "slowdown_vs_baseline": round(best_mill / best_base, 2),
    }


_RSS_SCRIPT = """
import resource, sys, tempfile
sys.path.insert(0, sys.argv[2])
import bench_samplers
with tempfile.TemporaryDirectory() as tmp:
    bench_samplers.gristmill_pipeline(int(sys.argv[1]), __import__("pathlib").Path(tmp), person=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(n: int) -> float:
    """Peak RSS (MB) of a fresh process creating ``n`` rows with the person pipeline."""
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(n), str(Path(__file__).parent)],
                         check=True, capture_output=True, text=True)
    return round(int(out.stdout.strip().splitlines()[-1]) / 1024, 1)


def run_all(n: int) -> dict[str, Any]:
    return {
        "pipeline": pipeline_bench(n, person=False),
        "pipeline_with_person": pipeline_bench(n, person=True),
        # The default batch size (1,000) pays a durable commit (fsync + metadata) per 1,000 rows.
        "pipeline_batch_1000": pipeline_bench(n, person=False, batch_size=1_000),
        "pipeline_with_person_batch_1000": pipeline_bench(n, person=True, batch_size=1_000),
        "peak_rss_1m_rows_mb": peak_rss_mb(1_000_000),
        "samplers": run_sampler_bench(n),
        "targets": {"pipeline_rows_per_s": 100_000, "pipeline_with_person_rows_per_s": 20_000,
                    "max_slowdown_vs_baseline": 3.0, "peak_rss_1m_rows_mb": 400},
    }


if __name__ == "__main__":
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(run_all(rows), indent=2))
