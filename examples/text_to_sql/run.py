"""The text-to-SQL example through the Python API: keep generating until N rows have SQL that
runs on shop.duckdb and returns rows (``target_valid_records``), then print the figures.

    python run.py                      # 5 valid rows, at most 40 generated, embedded model
    python run.py --target 10 --max-records 60 --artifact-path artifacts

Walk-through: docs/text-to-sql.md. The CLI route (``gristmill create text_to_sql.yaml -n 20``)
keeps every row instead, with its verdict.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gristmill as gm

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "text_to_sql.yaml"


def load_config(database: Path, *, models: bool = True) -> gm.DatasetConfig:
    """The example's config with the SQL check pointed at ``database``; ``models=False`` drops the
    config's embedded-model entry, so alias 'default' comes from the Mill or ~/.gristmill."""
    config = gm.DatasetConfig.from_yaml(CONFIG)
    check = config.column("sql_check")
    check.params = check.params.model_copy(update={"database": str(database)})
    if not models:
        config.models = []
    return config


def ensure_database(path: Path) -> Path:
    """``path``, built by build_db.py when it does not exist yet."""
    if not path.exists():
        import build_db

        build_db.build(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=5, help="rows whose SQL must pass")
    parser.add_argument("--max-records", type=int, default=40, help="most rows to generate")
    parser.add_argument("--artifact-path", default="artifacts")
    parser.add_argument("--name", default="text_to_sql_valid")
    args = parser.parse_args()
    config = load_config(ensure_database(HERE / "shop.duckdb"))
    started = time.monotonic()
    with gm.Mill(args.artifact_path) as mill:
        results = mill.create(config, num_records=args.target, dataset_name=args.name,
                              target_valid_records=args.target, max_records=args.max_records)
    meta = results.metadata
    frame = results.load_dataset()
    print(f"{meta.actual_rows} valid rows of {meta.built_rows} generated "
          f"({meta.actual_rows / max(meta.built_rows, 1):.0%}) in {time.monotonic() - started:.0f} s")
    print(f"model usage: {results.usage}")
    for _, row in frame.iterrows():
        verdict = row["judge"]["correct"]["score"] if row["judge"] else "-"
        print(f"- {row['question']}\n  {' '.join(str(row['sql']).split())}\n  rows={row['sql_check']['rows']} "
              f"judge={verdict}")


if __name__ == "__main__":
    main()
