"""What checking a reused dataset costs, beside generating it and reading it.

Generates a 1M-row dataset (sampler and expression columns, the default batch size), then
times, in the same run and with the files in the page cache (a rerun right after a run):

- ``size_footer``: existence, size and the parquet footer's row count of every batch file
  (what resume checked before; blind to a same-size edit);
- ``full_sha256``: the above plus the sha256 of every byte (``verify=True``, and the fallback for
  metadata written before CRC-32 was recorded);
- ``default_crc32``: the above with the CRC-32 instead of the sha256 (what every reuse checks
  now), through ``verify_batches`` itself;
- ``generate``: ``Mill.create`` of the dataset; ``read``: ``load_dataset()`` (all rows into pandas).

Prints JSON with the seconds of each and every check as a ratio of ``generate`` and of ``read``.

    python bench/bench_verify.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gristmill as gm
from gristmill.engine.dataset_plan import verify_batches
from gristmill.storage.atomic import crc32_file, sha256_file
from gristmill.storage.integrity import footer_rows
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import DatasetMetadata


def _config() -> gm.DatasetConfig:
    return (gm.ConfigBuilder()
            .add_column(name="n", column_type="sampler", sampler_type="uniform",
                        params={"low": 0, "high": 10**6, "integer": True})
            .add_column(name="x", column_type="sampler", sampler_type="uniform", params={"low": 0.0, "high": 1.0})
            .add_column(name="topic", column_type="sampler", sampler_type="category",
                        params={"values": ["math", "code", "chat", "science", "law"]})
            .add_column(name="label", column_type="expression", expr="{{ topic }} item {{ n }}")
            .build())


def _best(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def _size_footer(meta: DatasetMetadata, root: Path, *, digest: Callable[[Path], str] | None = None) -> None:
    for record in meta.completed_batches:
        path = root / record.file
        assert path.stat().st_size == record.bytes and footer_rows(path) == record.rows
        if digest is not None:
            digest(path)


def measure(workdir: Path, rows: int, repeat: int) -> dict[str, object]:
    with gm.Mill(workdir, run_config=gm.RunConfig(show_progress=False)) as mill:
        started = time.perf_counter()
        results = mill.create(_config(), num_records=rows, dataset_name="bench")
        generate = time.perf_counter() - started
        read = _best(repeat, results.load_dataset)
    root = workdir / "bench"
    meta = DatasetMetadata.load(root / "metadata.json")
    for record in meta.completed_batches:  # as recorded at write time (storage.atomic.WrittenFile.crc32)
        record.crc32 = record.crc32 or crc32_file(root / record.file)
    layout = DatasetLayout(root)
    seconds = {
        "size_footer": _best(repeat, lambda: _size_footer(meta, root)),
        "full_sha256": _best(repeat, lambda: _size_footer(meta, root, digest=sha256_file)),
        "default_crc32": _best(repeat, lambda: verify_batches(meta, layout)),
        "verify_true": _best(repeat, lambda: verify_batches(meta, layout, check_hashes=True)),
    }
    data_bytes = sum(b.bytes for b in meta.completed_batches)
    return {
        "rows": rows, "batches": len(meta.completed_batches), "data_mb": round(data_bytes / 2**20, 2),
        "generate_s": round(generate, 3), "read_s": round(read, 3),
        "verify_s": {k: round(v, 4) for k, v in seconds.items()},
        "ratio_to_generate": {k: round(v / generate, 4) for k, v in seconds.items()},
        "ratio_to_read": {k: round(v / read, 4) for k, v in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp), args.rows, args.repeat), indent=2))


if __name__ == "__main__":
    main()
