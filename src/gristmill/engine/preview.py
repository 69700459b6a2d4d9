"""Preview: build rows in memory with the same code path as ``create``, writing nothing."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from gristmill.config.dataset import DatasetConfig
from gristmill.config.run import RunConfig
from gristmill.engine.batches import BatchPlan
from gristmill.engine.generators import EngineContext
from gristmill.engine.loop import BackgroundLoop
from gristmill.engine.seeds import SeedReader, load_seed_table

if TYPE_CHECKING:
    from gristmill.llm.cache import ResponseCache
    from gristmill.llm.runtime import LLMRuntime


def preview_rows(config: DatasetConfig, *, num_records: int, run_config: RunConfig, loop: BackgroundLoop,
                 llm: LLMRuntime | None = None, response_cache: ResponseCache | None = None) -> pd.DataFrame:
    """The first ``num_records`` rows a run with ``run_config`` would produce (dropped columns included).

    ``response_cache`` answers requests an earlier preview already paid for; it must not be a
    dataset's own cache (the caller owns it, and a preview writes into no dataset).
    """
    seed = run_config.seed if run_config.seed is not None else secrets.randbits(63)
    context = EngineContext(config=config, run_config=run_config, dataset_dir=None, llm=llm,
                            response_cache=response_cache)
    reader = SeedReader(load_seed_table(config.seed), config.seed.sampling_strategy, seed) if config.seed else None
    plan = BatchPlan.prepare(config, context, reader)
    tables = []
    size = run_config.rows_per_batch(uses_models=any(c.model_aliases() for c in config.columns))
    for index, offset in enumerate(range(0, num_records, size)):
        rows = min(size, num_records - offset)
        batch = loop.run(plan.build(batch_index=index, row_offset=offset, num_rows=rows, run_seed=seed))
        table = batch.main
        if batch.dropped is not None:
            for name in batch.dropped.column_names:
                table = table.append_column(name, batch.dropped.column(name))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
