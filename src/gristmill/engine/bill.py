"""The bill of a dataset run, before it runs: per model column (LLM, embedding, image) and model,
the requests the run will send, those its response cache answers, and an upper bound.

The batches the run would build are built here in memory, without their paid parts. Seed rows,
samplers and expressions are computed as the run computes them (free and deterministic); each
LLM column's prompts are rendered (``LLMColumnGenerator.messages``) and their cache keys
(``ResponseCache.key``) looked up, and a cached answer fills its cell, so the prompts of later
columns that read it are known too. Cells the bill cannot know (an answer not cached yet, a
custom function's or a validator's output) make every prompt that reads them *unknown*: such a
request counts as paid, never as cached, so the bill is never under what the run sends. Skip
conditions and failed seed cells (``__errors``) leave cells out exactly as the run does.

Embedding and image columns are looked up the same way (``request_keys``): an embedding request
carries up to ``batch_size`` distinct texts of a batch, an image request one row. Their cells
(vectors, file paths) are not filled in, so a column reading them counts as paid.

A bill never contacts a model endpoint (no request is sent; clients only build bodies) and never
writes: the cache files are read as they are, without the lock or journal files SQLite would
otherwise leave beside them.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from gristmill.config.dataset import DatasetConfig
from gristmill.config.models import ModelPrice
from gristmill.config.run import RunConfig
from gristmill.engine.batch_job import prepare_plan
from gristmill.engine.batches import BatchPlan
from gristmill.engine.cells import ERRORS_COLUMN, CellGate, blank, read_errors, skip_mask
from gristmill.engine.dataset_plan import DatasetAction, DatasetDecision
from gristmill.engine.generators import EngineContext
from gristmill.engine.generators.base import BatchFrame, to_pylist
from gristmill.engine.generators.embedding import EmbeddingGenerator
from gristmill.engine.generators.image import ImageGenerator
from gristmill.engine.generators.llm import LLMColumnGenerator
from gristmill.engine.seeds import SeedReader
from gristmill.engine.services import EngineServices, uses_models
from gristmill.errors import GenerationError
from gristmill.llm.cache import ResponseCache
from gristmill.llm.pricing import format_cost, model_prices
from gristmill.storage.layout import DatasetLayout
from gristmill.storage.metadata import BatchSpec, DatasetMetadata

# Column types the bill computes as the run does: free and deterministic. Any other type (custom
# functions, validators, plugins) may cost something or reach the outside, so its cells are unknown.
FREE_COLUMN_TYPES = frozenset({"sampler", "expression"})
CHARS_PER_TOKEN = 4  # a rough, provider-neutral estimate of input tokens from request text


@dataclass
class ColumnBill:
    """The requests of one model column: counted while batches are walked, then read. ``to_pay``
    and ``unknown`` count requests, ``cells`` and ``cached`` cells (the same for LLM and image
    columns; an embedding request carries several texts)."""

    column: str
    model: str
    max_corrections: int = 0
    cells: int = 0  # cells the run generates (not skipped, not blocked by a failed cell)
    cached: int = 0  # answered by the response cache
    to_pay: int = 0  # prompt known, not in the cache
    unknown: int = 0  # prompt reads a cell the bill cannot know: counted as paid
    input_tokens: int = 0  # estimated, of the requests to pay
    max_tokens: int | None = None  # the model's output cap, if set
    rendered: int = 0  # prompts rendered (cached or not), and their estimated input tokens
    rendered_tokens: int = 0
    # Requests only the upper bound counts: embedding texts billed in an earlier batch (the cache
    # answers them when that batch finished first, as it does one batch at a time), and the rows
    # target_valid_records may add beyond num_records.
    bound_only: int = 0
    per_request: int = 1  # cells one request carries (an embedding request: up to batch_size texts)
    billed_keys: set[str] = field(default_factory=set, repr=False)

    @property
    def requests(self) -> int:
        """Requests to pay if every answer is usable at once (no correction)."""
        return self.to_pay + self.unknown

    @property
    def upper_bound(self) -> int:
        """Requests to pay at most: each may take ``max_corrections`` more."""
        return self.requests * (1 + self.max_corrections) + self.bound_only

    @property
    def exact(self) -> bool:
        """Every prompt was rendered and looked up: ``requests`` is what the run sends (plus
        corrections of answers that do not parse, and retries of failed sends)."""
        return self.unknown == 0

    @property
    def output_tokens(self) -> int | None:
        """At most, when the model caps its answers (``max_tokens``); None otherwise."""
        return None if self.max_tokens is None else self.upper_bound * self.max_tokens

    def cost(self, price: ModelPrice | None) -> float | None:
        """Estimated cost at ``price``: input tokens of the requests, output at the cap (0 when the
        output price is 0); None without a price, or when output is priced but not capped."""
        if price is None or (self.output_tokens is None and price.output_cost_per_million):
            return None
        return price.cost({"input_tokens": self.input_tokens, "output_tokens": self.output_tokens or 0})

    def to_dict(self, price: ModelPrice | None = None) -> dict[str, Any]:
        return {"column": self.column, "model": self.model, "cells": self.cells, "cached": self.cached,
                "to_pay": self.to_pay, "unknown": self.unknown, "requests": self.requests,
                "upper_bound": self.upper_bound, "exact": self.exact, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost": self.cost(price)}


@dataclass(frozen=True)
class DatasetBill:
    """What one dataset run will pay for, per LLM column and model (``columns``)."""

    action: str  # the dataset planner's decision (or the workflow stage's action)
    reason: str
    rows: int  # rows the run builds
    columns: tuple[ColumnBill, ...] = ()
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    note: str | None = None  # why the bill is only an upper bound, when it is

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.columns)

    @property
    def cached(self) -> int:
        return sum(c.cached for c in self.columns)

    @property
    def upper_bound(self) -> int:
        return sum(c.upper_bound for c in self.columns)

    @property
    def exact(self) -> bool:
        return all(c.exact for c in self.columns)

    @property
    def cost(self) -> float | None:
        """Estimated cost over the priced models; None when no column's cost can be estimated."""
        costs = [c.cost(self.prices.get(c.model)) for c in self.columns]
        known = [cost for cost in costs if cost is not None]
        return sum(known) if known else None

    def by_model(self) -> dict[str, dict[str, int]]:
        """Requests, cached answers and the upper bound per model alias."""
        out: dict[str, dict[str, int]] = {}
        for c in self.columns:
            entry = out.setdefault(c.model, {"requests": 0, "cached": 0, "upper_bound": 0})
            entry["requests"] += c.requests
            entry["cached"] += c.cached
            entry["upper_bound"] += c.upper_bound
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "rows": self.rows, "requests": self.requests,
                "cached": self.cached, "upper_bound": self.upper_bound, "exact": self.exact, "cost": self.cost,
                "note": self.note, "by_model": self.by_model(),
                "columns": [c.to_dict(self.prices.get(c.model)) for c in self.columns]}

    def format_lines(self) -> list[str]:
        """One line per column, for a terminal. When every prompt to pay reads an answer not received
        yet (none was rendered), input tokens cannot be estimated: the line says so rather than
        '~0', and its cost is a floor (the output at the cap)."""
        lines = []
        for c in self.columns:
            known = "exact" if c.exact else f"{c.unknown} of them unknown until earlier answers arrive"
            unestimated = c.unknown > 0 and c.rendered == 0
            tokens = "input tokens unknown" if unestimated else f"~{c.input_tokens:,} input tokens"
            line = (f"{c.column} ({c.model}): {c.requests} to pay, {c.cached} from cache, at most {c.upper_bound} "
                    f"[{known}], {tokens}")
            cost = c.cost(self.prices.get(c.model))
            if cost is not None:
                line += f", {'at least ' if unestimated else ''}~{format_cost(cost)} cost"
            lines.append(line)
        return lines


def decision_bill(services: EngineServices, config: DatasetConfig, *, decision: DatasetDecision,
                  stored: DatasetMetadata | None, num_records: int, run_seed: int,
                  run_config: RunConfig | None = None) -> DatasetBill:
    """The bill of ``Mill.create`` acting on ``decision`` (``stored``: the metadata it continues;
    ``run_config``: the run's, with its gate options, default the services')."""
    run_config = (run_config or services.run_config).model_copy(update={"seed": run_seed})
    if decision.action is DatasetAction.REUSE:
        return DatasetBill(decision.action.value, decision.reason, rows=0)
    if stored is not None:
        planned = stored.model_copy(deep=True)
        planned.plan_rows(num_records)
        specs = planned.missing_batches()
        caches = [DatasetLayout(decision.path).response_cache_path]
    else:
        specs = batch_specs(num_records, run_config.rows_per_batch(uses_models=uses_models(config)))
        caches = list(decision.import_caches)
    bill = count_requests(services, config, specs=specs, run_config=run_config, cache_files=caches)
    built = max(num_records, stored.built_rows if stored is not None else 0)
    return DatasetBill(decision.action.value, decision.reason, bill.rows, bill.columns, bill.prices,
                       gate_rounds(bill.columns, run_config, built_rows=built))


def batch_specs(num_records: int, batch_size: int) -> list[BatchSpec]:
    """The batches of a fresh run of ``num_records`` rows."""
    return [BatchSpec(index=i, row_offset=offset, rows=min(batch_size, num_records - offset))
            for i, offset in enumerate(range(0, num_records, batch_size))]


def count_requests(services: EngineServices, config: DatasetConfig, *, specs: Sequence[BatchSpec],
                   run_config: RunConfig, cache_files: Sequence[Path], cache_scope: str = "",
                   seed: SeedReader | None = None) -> DatasetBill:
    """Walk the batches ``specs`` as the run would build them, counting LLM requests; ``seed``
    replaces the config's own seed (a workflow stage's hand-off, read from its recorded files)."""
    if run_config.seed is None:
        raise ValueError("internal error: a bill needs the run seed the run would use")
    llm = services.llm_for(config)
    context = EngineContext(config=config, run_config=run_config, dataset_dir=None, llm=llm,
                            response_cache=None, cache_scope=cache_scope)
    plan = BatchPlan.prepare(config, context, seed) if seed is not None else prepare_plan(config, context,
                                                                                          run_config.seed)
    reader = CacheReader(cache_files if run_config.cache else ())
    bills: dict[str, ColumnBill] = {}
    try:
        for spec in specs:
            services.loop.run(_count_batch(plan, spec, run_config.seed, reader, bills))
    finally:
        reader.close()
    prices = model_prices(llm, {c.model for c in bills.values()}, config.models) if llm is not None else {}
    return DatasetBill("run", "", sum(s.rows for s in specs), tuple(bills.values()), prices)


def gate_rounds(columns: Sequence[ColumnBill], run_config: RunConfig, *, built_rows: int) -> str | None:
    """Under ``target_valid_records``: count the rows later rounds may add beyond ``built_rows``
    (up to ``max_records``, default 10 x the target, as the run caps them) in the upper bound of
    ``columns`` (their prompts are unknown: those batches are sized by the pass rate), and say so."""
    target = run_config.target_valid_records
    if target is None:
        return None
    extra = max(0, (run_config.max_records or 10 * target) - built_rows)
    for column in columns:
        column.bound_only += math.ceil(extra / column.per_request) * (1 + column.max_corrections)
    return (f"target_valid_records: up to {extra:,} more rows may be generated until enough pass; their "
            "requests are in the upper bound only")


class CacheReader:
    """Response-cache files read as they are: a file with no write-ahead log beside it is opened
    immutable (SQLite creates nothing next to it); one with a log (a run was killed) is read
    through its existing log, so answers not yet checkpointed count too."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._dbs: list[sqlite3.Connection] = []
        for path in paths:
            if not path.is_file():
                continue
            flags = "mode=ro" if Path(f"{path}-wal").is_file() else "mode=ro&immutable=1"
            try:
                db = sqlite3.connect(f"file:{quote(str(path.absolute()))}?{flags}", uri=True, check_same_thread=False)
                db.execute("SELECT key FROM responses LIMIT 1")
            except sqlite3.Error:
                continue  # unreadable: the run would pay these again (or refuse), so they count as paid
            self._dbs.append(db)

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for db in self._dbs:
            wanted = [k for k in keys if k not in found]
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in db.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk):
                    found[key] = json.loads(value)
        return found

    def close(self) -> None:
        for db in self._dbs:
            db.close()


async def _count_batch(plan: BatchPlan, spec: BatchSpec, run_seed: int, cache: CacheReader,
                       bills: dict[str, ColumnBill]) -> None:
    frame = BatchFrame(batch_index=spec.index, row_offset=spec.row_offset, num_rows=spec.rows, run_seed=run_seed)
    gate = CellGate(spec.rows)
    if plan.seed is not None:
        _load_seed(frame, gate, plan.seed.rows_for(spec.row_offset, spec.rows))
    unknown: dict[str, np.ndarray] = {}
    for step in plan.steps:
        if step.group:
            await _group_step(plan, step.columns, step.generator, frame, gate, unknown)
            continue
        column = step.columns[0]
        failed, skipped = _blocked(plan, column, frame, gate, unknown)
        active = ~failed & ~skipped
        unsure = _unknown_of(column.dependencies(), unknown, frame.num_rows) & active
        if isinstance(step.generator, LLMColumnGenerator):
            bill = bills.setdefault(column.name, _column_bill(step.generator))
            outputs, known = _llm_cells(step.generator, frame, active & ~unsure, cache, bill)
            bill.cells += int(active.sum())
            bill.unknown += int(unsure.sum())
            bill.input_tokens += int(unsure.sum()) * _mean_tokens(bill)
        elif isinstance(step.generator, EmbeddingGenerator | ImageGenerator):
            bill = bills.setdefault(column.name, _column_bill(step.generator))
            _keyed_requests(step.generator, frame, active & ~unsure, cache, bill)
            bill.cells += int(active.sum())
            bill.unknown += math.ceil(int(unsure.sum()) / bill.per_request)
            outputs, known = {}, ~active  # vectors and paths are not filled in: their readers count as paid
        elif column.column_type in FREE_COLUMN_TYPES:
            outputs = await _free_cells(step.generator, frame, active & ~unsure)
            known = ~unsure
        else:
            outputs, known = {}, ~active
        for name in column.output_columns():
            frame.set(name, blank(outputs.get(name, [None] * frame.num_rows), failed | skipped))
            unknown[name] = ~known & ~failed & ~skipped
        gate.record(column.output_columns(), failed, skipped)


def _load_seed(frame: BatchFrame, gate: CellGate, rows: Any) -> None:
    """Seed rows into ``frame``; cells the seed lists as failed block their readers, as in the run."""
    for name in rows.column_names:
        if name == ERRORS_COLUMN:
            read_errors(frame, rows.column(name))
        else:
            frame.set(name, rows.column(name))
    for row, problems in frame.problems.items():
        for problem in problems:
            if problem.column in frame.columns:
                gate.failed.setdefault(problem.column, np.zeros(frame.num_rows, dtype=bool))[row] = True


async def _group_step(plan: BatchPlan, columns: Sequence[Any], generator: Any, frame: BatchFrame, gate: CellGate,
                      unknown: dict[str, np.ndarray]) -> None:
    """Samplers are drawn as the run draws them; another group type's cells are unknown."""
    free = columns[0].column_type in FREE_COLUMN_TYPES
    values = await generator.generate(frame) if free else {}
    for column in columns:
        failed, skipped = _blocked(plan, column, frame, gate, unknown)
        for name in column.output_columns():
            frame.set(name, blank(values.get(name, [None] * frame.num_rows), failed | skipped))
            unknown[name] = np.zeros(frame.num_rows, dtype=bool) if free else ~failed & ~skipped
        gate.record(column.output_columns(), failed, skipped)


def _blocked(plan: BatchPlan, column: Any, frame: BatchFrame, gate: CellGate,
             unknown: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(failed, skipped) rows of ``column``: a skip condition that reads an unknown cell is taken
    not to hold there (the cell counts as paid)."""
    failed, skipped, _ = gate.blocked_by(column)
    unsure = _unknown_of(column.skip_columns(), unknown, frame.num_rows)
    candidates = ~failed & ~skipped & ~unsure
    if column.skip is not None and candidates.any():
        try:
            skipped = skipped | skip_mask(column, frame, candidates, plan.limits)
        except GenerationError:
            if not unsure.any():
                raise  # the run would fail the same way
    return failed, skipped


def _unknown_of(names: set[str], unknown: dict[str, np.ndarray], num_rows: int) -> np.ndarray:
    mask = np.zeros(num_rows, dtype=bool)
    for name in names:
        if name in unknown:
            mask |= unknown[name]
    return mask


def _column_bill(generator: LLMColumnGenerator | EmbeddingGenerator | ImageGenerator) -> ColumnBill:
    if isinstance(generator, EmbeddingGenerator):
        return ColumnBill(generator.column.name, generator.handle.alias, per_request=generator.column.batch_size)
    if isinstance(generator, ImageGenerator):
        return ColumnBill(generator.column.name, generator.handle.alias)
    max_tokens = generator.handle.resolved.model.inference_parameters.max_tokens
    return ColumnBill(generator.column.name, generator.handle.alias, max_corrections=generator.max_corrections,
                      max_tokens=max_tokens)


def _keyed_requests(generator: EmbeddingGenerator | ImageGenerator, frame: BatchFrame, rows: np.ndarray,
                    cache: CacheReader, bill: ColumnBill) -> None:
    """Look up the cache keys of an embedding or image column's ``rows``: the requests still to
    pay, as the run groups them (distinct texts per request for embeddings, a row per image)."""
    keys = generator.request_keys(frame, [int(i) for i in np.flatnonzero(rows)])
    found = cache.get_many(sorted(set(keys.values())))
    bill.cached += sum(1 for key in keys.values() if key in found or key in bill.billed_keys)
    missing = {key for key in keys.values() if key not in found}
    # An embedding text is keyed without its row, so an earlier batch may have billed it already;
    # an image key holds its row, so for images every missing key is new.
    new = missing - bill.billed_keys
    bill.billed_keys |= new
    size = bill.per_request
    bill.to_pay += math.ceil(len(new) / size)
    bill.bound_only += math.ceil(len(missing) / size) - math.ceil(len(new) / size)


def _llm_cells(generator: LLMColumnGenerator, frame: BatchFrame, rows: np.ndarray, cache: CacheReader,
               bill: ColumnBill) -> tuple[dict[str, list[Any]], np.ndarray]:
    """Build the request bodies of ``rows`` as the run would (images read, parameters drawn), look
    them up; returns the cells the cache fills and where. A row whose body cannot be built (a
    missing image) fails in the run without a request, so it is not billed."""
    picked = [int(i) for i in np.flatnonzero(rows)]
    bodies, _ = generator.request_bodies(frame, picked)
    keys = {i: ResponseCache.key(identity=generator.handle.identity, body=body, column=generator.cache_column,
                                 row=frame.row_offset + i) for i, body in bodies.items()}
    found = cache.get_many(list(keys.values()))
    cells: dict[str, list[Any]] = {name: [None] * frame.num_rows for name in generator.column.output_columns()}
    known = np.zeros(frame.num_rows, dtype=bool)
    for i, key in keys.items():
        stored = found.get(key)
        tokens = _tokens(bodies[i])
        bill.rendered, bill.rendered_tokens = bill.rendered + 1, bill.rendered_tokens + tokens
        if stored is None:
            bill.to_pay += 1
            bill.input_tokens += tokens
            continue
        bill.cached += 1
        known[i] = True
        for name, value in generator.cached_cells(stored, bodies[i]).items():
            cells[name][i] = value
    return cells, known


async def _free_cells(generator: Any, frame: BatchFrame, rows: np.ndarray) -> dict[str, list[Any]]:
    """A free column's values in ``rows`` (computed on those rows alone: others may read unknowns)."""
    picked = [int(i) for i in np.flatnonzero(rows)]
    if not picked:
        return {}
    values = await generator.generate(_subframe(frame, picked))
    out: dict[str, list[Any]] = {}
    for name, column_values in values.items():
        full: list[Any] = [None] * frame.num_rows
        for i, value in zip(picked, to_pylist(column_values), strict=True):
            full[i] = value
        out[name] = full
    return out


def _subframe(frame: BatchFrame, rows: Sequence[int]) -> BatchFrame:
    """A frame of ``rows`` of ``frame`` only (prompts of other rows may read unknown cells)."""
    sub = BatchFrame(batch_index=frame.batch_index, row_offset=frame.row_offset, num_rows=len(rows),
                     run_seed=frame.run_seed)
    for name in frame.columns:
        values = frame.pylist(name)
        sub.set(name, [values[i] for i in rows])
    return sub


def _tokens(body: Mapping[str, Any]) -> int:
    return math.ceil(len(json.dumps(body.get("messages", []), ensure_ascii=False)) / CHARS_PER_TOKEN)


def _mean_tokens(bill: ColumnBill) -> int:
    """Input tokens of a request whose prompt is unknown: the mean of those rendered so far."""
    return math.ceil(bill.rendered_tokens / bill.rendered) if bill.rendered else 0
