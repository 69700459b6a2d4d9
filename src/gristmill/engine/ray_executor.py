"""Batches as Ray tasks (``RunConfig(executor="ray")``, the ``gristmill[ray]`` extra).

The driver ships ``job.portable()`` once to Ray's object store and submits one task per
missing batch, at most twice the cluster's CPUs in flight. Each worker process prepares the
batch plan once per job (``PortableBatchJob.prepare``) and its own event loop once, builds the
batch and writes its files atomically into the dataset directory (the same
``batch_job.build_and_write`` as the local executor), then returns the ``BatchRecord``. The
driver commits each record as its task finishes, in any order; only the driver writes the
journal and ``metadata.json``.

LLM columns: the executor starts one throttle actor per (provider, model) for the whole cluster
(``llm/cluster_throttle.py``), kept for the executor's life, so every worker's requests share one
limit as a single process's would. Each task returns its batch's usage counters with its
record, merged on the driver (``BatchJob.add_usage``); new answers go to a per-batch cache shard
the driver merges when it commits the batch (``llm/cache_shards.py``).

A worker that dies mid-batch is replaced and its task retried (``max_retries``): every draw is
seeded by (run seed, batch index, column), so the retried batch is the same batch. A driver
that dies leaves the journal holding what committed, and a rerun builds exactly the missing
batches. A driver whose run fails or is interrupted cancels its running tasks and waits until
they have stopped (``RayExecutor._stop``), so a rerun in the same process never merges a shard
that a task is still writing; a failed or cancelled batch's usage still reaches the driver
(``FailedBatch``). The embedded llama.cpp model is refused (``refuse_local_models``).

The dataset directory must be one path every worker can write to (one machine, or a shared
filesystem), and the modules a config names callables from must be importable there.

Ray is imported here, on first use, never at ``import gristmill``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gristmill.config.dataset import DatasetConfig
from gristmill.engine.batch_job import PortableBatchJob, PreparedJob, Usage, build_and_write
from gristmill.engine.executor import BatchJob
from gristmill.engine.loop import BackgroundLoop
from gristmill.errors import ConfigError, GenerationError, GristmillError
from gristmill.storage.metadata import BatchRecord, BatchSpec

if TYPE_CHECKING:
    from gristmill.llm.registry import ModelRegistry

PROBE_TIMEOUT = 5.0  # seconds to reach a cluster's address; ray.init itself retries for minutes
DEFAULT_MAX_RETRIES = 3  # times a batch is retried after its worker process died
CANCEL_GRACE = 10.0  # seconds a cancelled batch gets to stop before its worker is killed
_CANCEL_POLL = 0.05  # seconds between a worker's looks for a cancel while it waits on its batch
_PLANS_PER_WORKER = 2  # prepared plans a worker keeps (a Mill runs one dataset at a time)
# Calls one throttle actor runs at once: every request waiting for a slot is one of them.
_THROTTLE_CONCURRENCY = 100_000

T = TypeVar("T")


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"executor='ray' needs Ray, which cannot be imported ({exc}); install the extra with "
                          "pip install 'gristmill[ray]', or use RunConfig(executor='local')") from None
    return ray


class RayExecutor:
    """One Ray task per batch, committed on the driver as each finishes.

    >>> executor = RayExecutor.connect(None)   # doctest: +SKIP
    """

    name = "ray"

    def __init__(self, ray: ModuleType, *, owns_session: bool, max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        self._ray = ray
        self._owns_session = owns_session  # True when connect() called ray.init: close() shuts it down
        self.max_retries = max_retries
        self._throttles: dict[tuple[str, str], Any] = {}  # (provider, model) -> throttle actor

    @classmethod
    def connect(cls, address: str | None) -> RayExecutor:
        """Connect to the cluster at ``address`` (None: a local Ray instance, or ``RAY_ADDRESS``).

        A Ray session this process already opened is used as it is. An address nobody answers
        at is a ConfigError within seconds, before any work (``ray.init`` would retry it for
        minutes)."""
        ray = import_ray()
        target = address if address is not None or ray.is_initialized() else os.environ.get("RAY_ADDRESS")
        if target is not None and target not in ("auto", "local"):
            _probe(target)
        if ray.is_initialized():
            return cls(ray, owns_session=False)
        try:
            ray.init(address=address, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {target or 'a new local instance'!r}: {exc}; "
                              "check RunConfig.ray_address (None starts a local instance)") from None
        return cls(ray, owns_session=True)

    def max_in_flight(self) -> int:
        """Tasks submitted at once: twice the cluster's CPUs, so no worker waits for the driver."""
        return max(1, 2 * int(self._ray.cluster_resources().get("CPU", 1)))

    def run(self, specs: Sequence[BatchSpec], job: BatchJob, commit: Callable[[BatchRecord], None]) -> None:
        if not specs:
            return
        ray = self._ray
        portable = job.portable()
        if portable.registry is not None:
            refuse_local_models(portable.config, portable.registry, portable.clients)
        portable = portable.with_throttles(self.throttles(portable.model_limits))
        job_ref = ray.put(portable)  # shipped once; every task of the run refers to it
        task = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(run_batch)
        waiting, limit = deque(specs), self.max_in_flight()
        running: dict[Any, BatchSpec] = {}
        try:
            while waiting or running:
                while waiting and len(running) < limit:
                    spec = waiting.popleft()
                    running[task.remote(job_ref, spec)] = spec
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    commit(self._record(ref, running.pop(ref), job))
        except BaseException:
            self._stop(running, job)
            raise

    def _stop(self, running: Mapping[Any, BatchSpec], job: BatchJob) -> None:
        """Cancel the tasks still running and wait until they have stopped: a task that outlived
        its run went on writing answers into its batch's shard while the next run merged and
        deleted that shard, losing a whole batch's answers. A worker sees the cancel within
        ``_CANCEL_POLL`` and drops only its requests in flight; one still busy ``CANCEL_GRACE``
        seconds later (or whose cancel Ray lost) is killed, which loses no more, since every answer
        that arrived is in its shard. The files they wrote are never committed (a rerun builds those
        batches again, from the cache); the requests they paid are counted."""
        refs = list(running)
        if not refs:
            return
        for ref in refs:
            self._ray.cancel(ref)
        stopped, stuck = self._ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE)
        if stuck:
            for ref in stuck:
                self._ray.cancel(ref, force=True)
            killed, _ = self._ray.wait(stuck, num_returns=len(stuck), timeout=CANCEL_GRACE)
            stopped += killed
        for ref in stopped:
            job.add_usage(self._outcome(ref)[1])

    def throttles(self, limits: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], Any]:
        """The throttle actor of each (provider, model) in ``limits``, started on first use with
        its ``max_parallel_requests`` (a smaller one later lowers its ceiling, as in one process)."""
        actors = {}
        for key, max_parallel in limits.items():
            actor = self._throttles.get(key)
            if actor is None:
                from gristmill.llm.cluster_throttle import ThrottleService

                service = self._ray.remote(num_cpus=0, max_concurrency=_THROTTLE_CONCURRENCY)(ThrottleService)
                actor = self._throttles[key] = service.remote(max_parallel)
            else:
                actor.lower_ceiling.remote(max_parallel)
            actors[key] = actor
        return actors

    def _record(self, ref: Any, spec: BatchSpec, job: BatchJob) -> BatchRecord:
        """The finished task's record, its usage added to ``job`` (a failed batch's too: its
        requests were paid); its failure as the error the worker raised (or a GenerationError)."""
        record, usage, error = self._outcome(ref)
        job.add_usage(usage)
        if isinstance(error, GristmillError):
            raise error from None
        if isinstance(error, self._ray.exceptions.RayTaskError):
            raise GenerationError(f"batch {spec.index} failed on a Ray worker: {error}") from None
        if error is not None:
            raise GenerationError(
                f"batch {spec.index} could not be built on Ray (tried {self.max_retries + 1} times): "
                f"{type(error).__name__}: {error}; the batches committed so far are kept, rerun to build the rest"
            ) from None
        assert record is not None
        return record

    def _outcome(self, ref: Any) -> tuple[BatchRecord | None, Usage, BaseException | None]:
        """(record, usage, None) of a task that succeeded; (None, usage, error) of one that failed,
        where usage is what the batch paid before it raised (empty when its worker died)."""
        exceptions = self._ray.exceptions
        try:
            record, usage = self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, FailedBatch):
                return None, cause.usage, cause.error if isinstance(cause.error, GristmillError) else exc
            return None, {}, cause if isinstance(cause, GristmillError) else exc
        except exceptions.RayError as exc:
            return None, {}, exc
        return record, usage, None

    def close(self) -> None:
        """Shut down the Ray session this executor started (one it found open stays open)."""
        if self._ray.is_initialized():
            for actor in self._throttles.values():
                self._ray.kill(actor)
        self._throttles.clear()
        if self._owns_session and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_session = False


def refuse_local_models(config: DatasetConfig, registry: ModelRegistry, clients: Mapping[str, Any] | None) -> None:
    """ConfigError when a column of ``config`` calls the embedded llama.cpp model: every Ray worker
    would load a copy of it, for one request at a time across the cluster. A client of the
    caller's for the 'local' provider (``Mill(clients=...)``) is its own business."""
    for alias in sorted({alias for column in config.columns for alias in column.model_aliases()}):
        provider = registry.resolve(alias, config.models).provider
        if provider.provider_type == "local" and provider.name not in (clients or {}):
            raise ConfigError(
                f"model alias {alias!r} uses the embedded local model (provider {provider.name!r}), which "
                "every Ray worker would load a copy of; serve the model over HTTP (llama.cpp's server, vLLM) "
                "and configure an openai provider for it, or use RunConfig(executor='local')")


def _probe(address: str) -> None:
    """ConfigError unless something accepts a TCP connection at ``address`` ('[ray://]host:port')."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address {address!r} must be 'host:port', 'ray://host:port', 'auto' or None")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at ray_address {address!r} ({exc}); start one there "
                          "(ray start --head), fix the address, or leave it None for a local instance") from None


# -- in the worker process -------------------------------------------------------------------
_worker_lock = threading.Lock()
_worker_plans: OrderedDict[str, PreparedJob] = OrderedDict()
_worker_loop: _WorkerLoop | None = None


class FailedBatch(Exception):
    """What a task raises when its batch failed: the error and the usage of the requests the
    batch paid for before it did, which the driver counts (``RayExecutor._outcome``)."""

    def __init__(self, error: BaseException, usage: Usage) -> None:
        super().__init__(error, usage)  # as args, so the pair survives pickling back to the driver
        self.error, self.usage = error, usage


class _WorkerLoop(BackgroundLoop):
    """A worker's event loop, on a background thread like the Mill's, whose ``run`` notices
    ``ray.cancel`` at once and returns only when the cancelled batch has unwound.

    ``ray.cancel`` raises KeyboardInterrupt in the task through ``_thread.interrupt_main``, which
    sets a flag but wakes no blocked call: waiting on the batch without a timeout, the worker
    finished the whole batch first, paying every request of it after its driver had given up.
    Waiting in short slices sees the flag within ``_CANCEL_POLL``; the batch's coroutine is then
    cancelled (only its requests in flight are lost) and awaited, so no answer arrives after
    the batch's shard is closed."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop, batch = self._ensure(), _LoopBatch(coro)
        try:
            loop.call_soon_threadsafe(batch.start)
            while not batch.finished.wait(_CANCEL_POLL):
                pass
        except KeyboardInterrupt:
            loop.call_soon_threadsafe(batch.stop)
            batch.finished.wait(CANCEL_GRACE)
            raise
        assert batch.task is not None
        return batch.task.result()


class _LoopBatch(Generic[T]):
    """One batch's coroutine on the worker loop. ``start`` and ``stop`` run on the loop, in the
    order they were scheduled, so a cancel arriving at any moment stops the batch or finds it
    never started; ``finished`` is set either way."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.task: asyncio.Task[T] | None = None
        self.finished = threading.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.coro)
        self.task.add_done_callback(lambda _: self.finished.set())

    def stop(self) -> None:
        if self.task is None:
            self.coro.close()  # never started
            self.finished.set()
        else:
            self.task.cancel()


def run_batch(job: PortableBatchJob, spec: BatchSpec) -> tuple[BatchRecord, Usage]:
    """The Ray task: build batch ``spec`` of ``job`` and write its files; runs in a worker.
    Returns the record and the usage of the LLM requests the batch made; raises FailedBatch."""
    prepared, loop = _prepared(job)
    prepared.take_usage()  # left by a batch interrupted outside the try below: belongs to no record
    if prepared.cache is not None:
        from gristmill.llm.cache_shards import shard_path

        prepared.cache.open_batch(shard_path(job.dataset_dir, spec.index))
    try:
        record = build_and_write(prepared.plan, job.layout, spec, run_seed=job.run_seed, run=loop.run)
    except BaseException as exc:  # a cancel (KeyboardInterrupt) too: its paid requests count
        raise FailedBatch(exc, prepared.take_usage()) from exc
    finally:
        if prepared.cache is not None:
            prepared.cache.close_batch()  # closed before the driver merges the shard
    return record, prepared.take_usage()


def _prepared(job: PortableBatchJob) -> tuple[PreparedJob, _WorkerLoop]:
    """This worker's plan for ``job`` (prepared on its first batch) and its event loop."""
    global _worker_loop
    with _worker_lock:
        if _worker_loop is None:
            _worker_loop = _WorkerLoop()
        plan = _worker_plans.get(job.token)
        if plan is None:
            plan = _worker_plans[job.token] = job.prepare()
            while len(_worker_plans) > _PLANS_PER_WORKER:
                _worker_plans.popitem(last=False)
        _worker_plans.move_to_end(job.token)
        return plan, _worker_loop
