"""Per-batch commit cost as a dataset grows, and bytes written per byte of data.

Prints JSON:
- ``commit_ms``: median time of the commit step (journal line + bookkeeping) over the first
  and the last 100 batches of a 10,000-batch dataset, timed through the executor seam; target
  ratio last/first within 1.5.
- ``rewrite_baseline_ms``: in the same run, what the previous commit did (rewrite the whole
  metadata.json) with 1 and with 10,000 batches recorded.
- ``bytes_written_per_data_byte``: bytes this process wrote (``/proc/self/io`` wchar) per
  byte of parquet data, at the default batch size; target < 1.5.

    python bench/bench_commit.py [--batches 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import gristmill as gm
from gristmill.engine.dataset_plan import dataset_identity
from gristmill.engine.dataset_run import DatasetJob, DatasetRun
from gristmill.engine.executor import BatchJob
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import BatchRecord, BatchSpec, DatasetMetadata


class TimedCommits:
    """The local executor, timing each commit call."""

    name = "timed"

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        for spec in specs:
            record = job.build_and_write(spec)
            started = time.perf_counter()
            commit(record)
            self.seconds.append(time.perf_counter() - started)


def _config(columns: int) -> gm.DatasetConfig:
    builder = gm.ConfigBuilder()
    for i in range(columns):
        builder.add_column(name=f"x{i}", column_type="sampler", sampler_type="uniform",
                           params={"low": 0, "high": 1000, "integer": True})
    builder.add_column(name="label", column_type="expression", expr="item {{ x0 }}")
    return builder.build()


def commit_scaling(root: Path, batches: int) -> dict[str, float]:
    cfg = _config(2)
    mill = gm.Mill(root, run_config=gm.RunConfig(batch_size=2, show_progress=False))
    executor = TimedCommits()
    job = DatasetJob(config=cfg, layout=DatasetLayout(root / "scale"), dataset_name="scale", num_records=2 * batches,
                     run_config=mill.run_config.model_copy(update={"seed": 1}), identity=dataset_identity(cfg))
    DatasetRun(job, mill.services, executor=executor).execute(None)
    mill.close()
    # The fastest tenth as well as the median: a noisy machine (other processes) inflates medians
    # of the later window unevenly, the fast tail shows the cost the commit itself has.
    report: dict[str, float] = {}
    for label, pick in (("median", statistics.median), ("p10", _p10)):
        first, last = pick(executor.seconds[:100]) * 1000, pick(executor.seconds[-100:]) * 1000
        report |= {f"{label}_first_100": round(first, 4), f"{label}_last_100": round(last, 4),
                   f"{label}_ratio": round(last / first, 3)}
    return report


def _p10(values: list[float]) -> float:
    return sorted(values)[len(values) // 10]


def rewrite_baseline(root: Path, batches: int) -> dict[str, float]:
    meta = DatasetMetadata.load(root / "scale" / "metadata.json")
    one = meta.model_copy(update={"completed_batches": meta.completed_batches[:1]})
    timings = {}
    for label, m in (("with_1_batch", one), (f"with_{batches}_batches", meta)):
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            m.save(root / "baseline.json")
            samples.append(time.perf_counter() - started)
        timings[label] = round(statistics.median(samples) * 1000, 4)
    timings["ratio"] = round(timings[f"with_{batches}_batches"] / timings["with_1_batch"], 3)
    return timings


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def write_amplification(root: Path, rows: int) -> dict[str, float]:
    mill = gm.Mill(root, run_config=gm.RunConfig(show_progress=False))  # default batch size
    before = _wchar()
    results = mill.create(_config(6), num_records=rows, dataset_name="amp")
    written = _wchar() - before
    mill.close()
    data = sum(p.stat().st_size for p in results.batch_files())
    return {"rows": rows, "batch_size": gm.RunConfig().batch_size, "data_bytes": data, "bytes_written": written,
            "ratio": round(written / data, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        scaling = commit_scaling(root, args.batches)
        report = {"batches": args.batches, "commit_ms": scaling, "run_seconds": round(time.perf_counter() - started, 1),
                  "rewrite_baseline_ms": rewrite_baseline(root, args.batches),
                  "bytes_written_per_data_byte": write_amplification(root, args.rows)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
