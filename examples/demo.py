"""`make demo`: generate a dataset, show it, then rerun with resume and show nothing was redone."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gristmill as gm  # noqa: E402
from gristmill.cli.main import load_config, show_frame  # noqa: E402

console = Console()
ARTIFACTS = HERE.parent / "demo-artifacts"


def batch_mtimes(results: gm.DatasetResults) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in results.batch_files()}


def dataset_demo(mill: gm.Mill) -> None:
    config = load_config(HERE / "products.yaml")
    console.rule("[bold]1. create 20,000 rows from examples/products.yaml")
    started = time.perf_counter()
    results = mill.create(config, num_records=20_000, dataset_name="products", resume=gm.ResumeMode.IF_POSSIBLE)
    elapsed = time.perf_counter() - started
    meta = results.metadata
    console.print(f"{meta.actual_rows:,} rows in {len(meta.completed_batches)} batch files, {elapsed:.2f}s "
                  f"({meta.actual_rows / elapsed:,.0f} rows/s)")
    console.print(f"dataset:  {results.artifact_path}/parquet-files/")
    console.print(f"metadata: {results.artifact_path}/metadata.json (fingerprint {meta.fingerprint[:12]}, "
                  f"seed {meta.run_seed})")
    columns = ["product_id", "category", "price", "rating", "title", "price_band"]
    show_frame(results.load_dataset()[columns].head(5), title="first rows (some columns)", max_width=28)
    show_frame(results.load_processor_output("search_records").head(3), title="processor 'search_records'")

    console.rule("[bold]2. the same command again, with resume")
    before = batch_mtimes(results)
    started = time.perf_counter()
    again = mill.create(config, num_records=20_000, dataset_name="products", resume=gm.ResumeMode.IF_POSSIBLE)
    elapsed = time.perf_counter() - started
    rewritten = [name for name, mtime in batch_mtimes(again).items() if before.get(name) != mtime]
    console.print(f"resumed in {elapsed * 1000:.0f} ms; batch files rewritten: {len(rewritten)} of {len(before)} "
                  f"(same directory: {again.artifact_path == results.artifact_path})")
    if rewritten:
        raise SystemExit("demo failed: a complete dataset was regenerated on resume")

    console.rule("[bold]3. grow it to 25,000 rows: only the new batches are generated")
    grown = mill.create(config, num_records=25_000, dataset_name="products", resume=gm.ResumeMode.IF_POSSIBLE)
    rewritten = [name for name, mtime in batch_mtimes(grown).items() if before.get(name) != mtime]
    console.print(f"{grown.count_records():,} rows; new or rewritten batch files: {', '.join(rewritten)}")


def llm_demo(mill: gm.Mill) -> None:
    console.rule("[bold]4. an LLM column on the embedded SmolLM2-135M model (offline, CPU)")
    model = gm.ModelConfig(alias="default", model="SmolLM2-135M-Instruct", provider="local",
                           inference_parameters={"temperature": 0.2, "max_tokens": 40, "seed": 1})
    config = (gm.ConfigBuilder(models=[model])
              .add_column(name="category", column_type="sampler", sampler_type="category",
                          params={"values": ["books", "electronics", "garden", "toys"]})
              .add_column(name="tone", column_type="sampler", sampler_type="category",
                          params={"values": ["playful", "formal", "bold", "calm", "witty"]})
              .add_column(name="tagline", column_type="llm_text",
                          prompt="Write a {{ tone }} one-sentence shop tagline for a {{ category }} product.")
              .build())
    first = mill.create(config, num_records=20, dataset_name="taglines", resume=gm.ResumeMode.IF_POSSIBLE)
    console.print(f"20 rows: {first.usage['default']['requests']} requests to the model")
    grown = mill.create(config, num_records=30, dataset_name="taglines", resume=gm.ResumeMode.IF_POSSIBLE)
    before, usage = first.usage["default"]["requests"], grown.usage["default"]
    console.print(f"grown to 30 rows: {usage['requests'] - before} new requests (one per new row); "
                  f"earlier answers stay in the response cache ({usage.get('cache_hits', 0)} cache hits so far)")
    show_frame(grown.load_dataset().head(5), title="taglines (a 135M-parameter model: expect odd prose)")


def main() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    with gm.Mill(ARTIFACTS, run_config=gm.RunConfig(batch_size=2_000, seed=7)) as mill:
        dataset_demo(mill)
        llm_demo(mill)
    console.print(f"\n[green]demo complete[/]: artifacts under {ARTIFACTS}")


if __name__ == "__main__":
    main()
