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
batches. The dataset directory must be one path every worker can write to (one machine, or a
shared filesystem), and the modules a config names callables from must be importable there.

Ray is imported here, on first use, never at ``import gristmill``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from gristmill.engine.batch_job import PortableBatchJob, PreparedJob, Usage, build_and_write
from gristmill.engine.executor import BatchJob
from gristmill.engine.loop import BackgroundLoop
from gristmill.errors import ConfigError, GenerationError, GristmillError
from gristmill.storage.metadata import BatchRecord, BatchSpec

PROBE_TIMEOUT = 5.0  # seconds to reach a cluster's address; ray.init itself retries for minutes
DEFAULT_MAX_RETRIES = 3  # times a batch is retried after its worker process died
_PLANS_PER_WORKER = 2  # prepared plans a worker keeps (a Mill runs one dataset at a time)
# Calls one throttle actor runs at once: every request waiting for a slot is one of them.
_THROTTLE_CONCURRENCY = 100_000


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
                    record, usage = self._record(ref, running.pop(ref))
                    job.add_usage(usage)
                    commit(record)
        except BaseException:
            for ref in running:  # files they may still write are never committed: a rerun redoes them
                ray.cancel(ref)
            raise

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

    def _record(self, ref: Any, spec: BatchSpec) -> tuple[BatchRecord, Usage]:
        """The task's record and usage; its failure as the error the worker raised (or a GenerationError)."""
        exceptions = self._ray.exceptions
        try:
            record: tuple[BatchRecord, Usage] = self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, GristmillError):
                raise cause from None
            raise GenerationError(f"batch {spec.index} failed on a Ray worker: {exc}") from None
        except exceptions.RayError as exc:
            raise GenerationError(
                f"batch {spec.index} could not be built on Ray (tried {self.max_retries + 1} times): "
                f"{type(exc).__name__}: {exc}; the batches committed so far are kept, rerun to build the rest"
            ) from None
        return record

    def close(self) -> None:
        """Shut down the Ray session this executor started (one it found open stays open)."""
        if self._ray.is_initialized():
            for actor in self._throttles.values():
                self._ray.kill(actor)
        self._throttles.clear()
        if self._owns_session and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_session = False


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
_worker_loop: BackgroundLoop | None = None


def run_batch(job: PortableBatchJob, spec: BatchSpec) -> tuple[BatchRecord, Usage]:
    """The Ray task: build batch ``spec`` of ``job`` and write its files; runs in a worker.
    Returns the record and the usage of the LLM requests the batch made."""
    prepared, loop = _prepared(job)
    prepared.take_usage()  # counters a failed earlier batch left behind belong to no record
    if prepared.cache is not None:
        from gristmill.llm.cache_shards import shard_path

        prepared.cache.open_batch(shard_path(job.dataset_dir, spec.index))
    try:
        record = build_and_write(prepared.plan, job.layout, spec, run_seed=job.run_seed, run=loop.run)
    finally:
        if prepared.cache is not None:
            prepared.cache.close_batch()  # closed before the driver merges the shard
    return record, prepared.take_usage()


def _prepared(job: PortableBatchJob) -> tuple[PreparedJob, BackgroundLoop]:
    """This worker's plan for ``job`` (prepared on its first batch) and its event loop."""
    global _worker_loop
    with _worker_lock:
        if _worker_loop is None:
            _worker_loop = BackgroundLoop()
        plan = _worker_plans.get(job.token)
        if plan is None:
            plan = _worker_plans[job.token] = job.prepare()
            while len(_worker_plans) > _PLANS_PER_WORKER:
                _worker_plans.popitem(last=False)
        _worker_plans.move_to_end(job.token)
        return plan, _worker_loop
