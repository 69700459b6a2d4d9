"""The executor seam: "build and write these batches", below the planners and above storage.

A dataset run hands an executor the batches that are missing (``BatchSpec``: index, first
row, rows) and a ``BatchJob`` that builds one batch and writes its files atomically into the
dataset directory. The executor calls ``commit(record)`` on the calling (driver) thread as
each batch is durably written; batches may complete in any order, since every draw is seeded
by (run seed, batch index, column) and completion is recorded as a set of indices. Only the
driver writes ``metadata.json``.

``LocalExecutor`` builds batches one after another on the Mill's event loop (LLM requests
inside a batch run concurrently). ``RayExecutor`` (``ray_executor.py``) ships
``job.portable()`` to Ray workers, which build and write batches with the same code
(``batch_job.build_and_write``) and return their records to the driver to commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from gristmill.storage.metadata import BatchRecord, BatchSpec

if TYPE_CHECKING:
    from gristmill.engine.batch_job import PortableBatchJob


class BatchJob(Protocol):
    """Builds one batch and writes its files; returns the record of what it wrote."""

    def build_and_write(self, spec: BatchSpec) -> BatchRecord: ...

    def portable(self) -> PortableBatchJob:
        """The job as a picklable value another process can build batches from."""
        ...

    def add_usage(self, usage: dict[str, dict[str, int]]) -> None:
        """Counters of LLM requests a batch built elsewhere made (merged before its commit)."""
        ...


class BatchExecutor(Protocol):
    """Runs every batch of ``specs`` through ``job``, calling ``commit`` as each is written."""

    name: str

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None: ...

    def close(self) -> None:
        """Release what the executor holds (a cluster connection it opened); the Mill's close() calls it."""
        ...


class LocalExecutor:
    """In process, in index order: the default."""

    name = "local"

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        for spec in specs:
            commit(job.build_and_write(spec))

    def close(self) -> None:
        pass
