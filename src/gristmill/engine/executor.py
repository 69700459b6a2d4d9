"""The executor seam: "build and write these batches", below the planners and above storage.

A dataset run hands an executor the batches that are missing (``BatchSpec``: index, first
row, rows) and a ``BatchJob`` that builds one batch and writes its files atomically into the
dataset directory. The executor calls ``commit(record)`` on the calling (driver) thread as
each batch is durably written; batches may complete in any order, since every draw is seeded
by (run seed, batch index, column) and completion is recorded as a set of indices. Only the
driver writes ``metadata.json``.

``LocalExecutor`` builds batches one after another on the Mill's event loop (LLM requests
inside a batch run concurrently). A distributed executor implements the same two methods
and needs no change to the planners or to storage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from gristmill.storage.metadata import BatchRecord, BatchSpec


class BatchJob(Protocol):
    """Builds one batch and writes its files; returns the record of what it wrote."""

    def build_and_write(self, spec: BatchSpec) -> BatchRecord: ...


class BatchExecutor(Protocol):
    """Runs every batch of ``specs`` through ``job``, calling ``commit`` as each is written."""

    name: str

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None: ...


class LocalExecutor:
    """In process, in index order: the default."""

    name = "local"

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        for spec in specs:
            commit(job.build_and_write(spec))
