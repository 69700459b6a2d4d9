"""One throttle per (provider, model) for a whole Ray cluster (``RunConfig(executor="ray")``).

``ThrottleService`` is the body of a Ray actor the driver owns, one per (provider, model): it
holds an ``AdaptiveThrottle`` (the same AIMD, pauses and Retry-After rules as in one process)
and runs as an async actor, so requests waiting for a slot wait inside it without blocking the
others. On a worker, ``ClusterThrottle`` stands in for the local throttle of a ``ModelHandle``.
One actor round trip per request held the 50 ms, limit-64 benchmark (``bench/bench_scale.py
llm``) to 0.46-0.59 of the limit, so a worker leases slots in small blocks and hands a freed slot
straight to its own next waiting request a few times before giving it back; outcomes (success,
or 429 with its pause) and given-back slots travel in one unawaited call per event-loop turn.
That measured 0.91-0.92 with no 429.

Slots are held by worker processes, each of which sends a heartbeat every ``HEARTBEAT``
seconds while it has a throttle. A worker killed while holding slots never releases them; the
actor gives them back once its heartbeat has been silent for ``LEASE`` seconds (so a killed
worker costs the cluster those slots for a few seconds, never for good). A slot granted to a
dead worker's queued request is given back the same way.

Ray is never imported here: the actor class is wrapped by ``engine/ray_executor.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

from gristmill.config.models import ModelConfig
from gristmill.llm.runtime import LLMRuntime, ModelHandle
from gristmill.llm.throttle import AdaptiveThrottle

Report = tuple[str, int, float]  # ("ok" | "429", epoch, pause)
HEARTBEAT = 1.0  # seconds between a worker's heartbeats
LEASE = 6.0  # seconds of silence after which a worker's slots are given back


class ThrottleService:
    """The cluster-wide state of one (provider, model): an ``AdaptiveThrottle`` and who holds its slots."""

    def __init__(self, max_parallel: int) -> None:
        self.throttle = AdaptiveThrottle(max_parallel)
        self._held: dict[str, int] = {}  # worker -> slots held
        self._seen: dict[str, float] = {}  # worker -> time.monotonic() of its last call
        self._reaper: asyncio.Task[None] | None = None
        self.reclaimed = 0  # slots given back for workers that went silent

    def lower_ceiling(self, max_parallel: int) -> None:
        self.throttle.lower_ceiling(max_parallel)

    def heartbeat(self, worker: str) -> None:
        self._seen[worker] = time.monotonic()

    async def lease(self, worker: str, want: int, first: bool) -> tuple[int, int, int]:
        """(slots granted, epoch, current slots) once at least one slot is granted to ``worker``;
        up to ``want`` when more are free at that moment."""
        self._seen[worker] = time.monotonic()
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_silent_workers())
        throttle = self.throttle
        epoch = await throttle.acquire(first=first)
        granted = 1
        while granted < want and throttle.in_flight < throttle.slots and not throttle.paused():
            throttle.in_flight += 1
            granted += 1
        self._held[worker] = self._held.get(worker, 0) + granted
        return granted, epoch, throttle.slots

    def release(self, worker: str, reports: list[Report], slots: int) -> None:
        """Apply the outcomes, then free ``slots`` slots of ``worker`` (fewer when some were reclaimed)."""
        self._seen[worker] = time.monotonic()
        for outcome, epoch, pause in reports:
            if outcome == "ok":
                self.throttle.on_success(epoch)
            else:
                self.throttle.on_rate_limited(epoch, pause=pause)
        freed = min(slots, self._held.get(worker, 0))
        if freed:
            self._held[worker] -= freed
            for _ in range(freed):
                self.throttle.release()

    def state(self) -> dict[str, Any]:
        """For tests and benchmarks: the limit, slots in use and how many were reclaimed."""
        t = self.throttle
        return {"limit": t.limit, "ceiling": t.ceiling, "in_flight": t.in_flight,
                "held": sum(self._held.values()), "reclaimed": self.reclaimed}

    async def _reap_silent_workers(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            now = time.monotonic()
            for worker in [w for w, n in self._held.items() if n and now - self._seen.get(w, 0.0) > LEASE]:
                for _ in range(self._held.pop(worker)):
                    self.reclaimed += 1
                    self.throttle.release()


class ClusterThrottle(AdaptiveThrottle):
    """A worker's stand-in for the throttle of one (provider, model): the actor decides the limit.

    Slots are leased from the actor, several at a time when several requests wait here, and a
    slot freed while requests of this worker wait is handed to the next of them directly, at
    most ``REUSE`` times in a row before it goes back to the actor (so other workers get their
    turn and a lowered limit takes effect). After a 429 every freed slot goes back to the actor
    until the next lease: the actor's halving and pauses apply at once. ``on_success`` /
    ``on_rate_limited`` travel with the next release call (``ModelHandle`` calls them just
    before ``release``)."""

    REUSE = 8

    def __init__(self, actor: Any, max_parallel: int) -> None:
        super().__init__(max_parallel)
        self._actor = actor
        self._slots = max_parallel
        self._reports: list[Report] = []
        self._returns = 0  # slots to give back in the next release call
        self._flush_scheduled = False
        self._queue: deque[asyncio.Future[int]] = deque()
        self._leasing = False
        self._held = 0  # slots leased and not yet given back
        self._epoch = 0
        self._reused = 0
        self._hand_back = False  # after a 429: no local reuse until the next lease
        self._worker = uuid.uuid4().hex  # this proxy (it never leaves its process)
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def slots(self) -> int:
        return self._slots  # as the actor last said: only sizes how many rows start at once

    def lower_ceiling(self, max_parallel: int) -> None:
        self._actor.lower_ceiling.remote(max_parallel)

    async def acquire(self, *, first: bool = False) -> int:
        loop = asyncio.get_running_loop()
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = loop.create_task(self._beat())
        waiter: asyncio.Future[int] = loop.create_future()
        if first:
            self._queue.appendleft(waiter)
        else:
            self._queue.append(waiter)
        self._lease_more()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted as we were cancelled: pass it on
            elif waiter in self._queue:
                self._queue.remove(waiter)
            raise

    def on_success(self, epoch: int) -> None:
        self._reports.append(("ok", epoch, 0.0))

    def on_rate_limited(self, epoch: int, *, pause: float = 0.0) -> None:
        self._reports.append(("429", epoch, pause))
        self._hand_back = True

    def release(self) -> None:
        if not self._hand_back and self._reused < self.REUSE and self._grant_one(self._epoch):
            self._reused += 1
            if self._reports:
                self._schedule_flush()
            return
        self._reused = 0
        self._returns += 1
        self._held -= 1
        self._schedule_flush()
        if self._queue:
            self._lease_more()

    def _grant_one(self, epoch: int) -> bool:
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(epoch)
                return True
        return False

    def _lease_more(self) -> None:
        if not self._leasing and self._queue:
            self._leasing = True
            first = True  # queued here already: ahead of new arrivals at the actor
            call = self._actor.lease.remote(self._worker, min(len(self._queue), max(1, self._slots // 4)), first)
            asyncio.wrap_future(call.future()).add_done_callback(self._leased)

    def _leased(self, done: asyncio.Future[Any]) -> None:
        self._leasing = False
        if done.cancelled() or done.exception() is not None:
            for waiter in self._queue:  # the actor is gone: fail the requests waiting here
                if not waiter.done():
                    waiter.set_exception(RuntimeError(f"the cluster throttle failed: {done.exception()}"))
            self._queue.clear()
            return
        granted, self._epoch, self._slots = done.result()
        self._hand_back, self._reused = False, 0
        self._held += granted
        for _ in range(granted):
            if not self._grant_one(self._epoch):
                self._returns += 1  # nobody waits any more: straight back
                self._held -= 1
        if self._returns:
            self._schedule_flush()
        self._lease_more()

    def _schedule_flush(self) -> None:
        # Releases and outcomes of one turn of the event loop travel in one call, not awaited
        # (the actor applies one caller's calls in order).
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        reports, returns = self._reports, self._returns
        self._reports, self._returns, self._flush_scheduled = [], 0, False
        self._actor.release.remote(self._worker, reports, returns)

    async def _beat(self) -> None:
        while True:  # one small call a second while this proxy holds or wants slots
            self._actor.heartbeat.remote(self._worker)
            await asyncio.sleep(HEARTBEAT)
            if not (self._held or self._queue or self._leasing):
                return  # the next acquire starts it again


class ClusterLLMRuntime(LLMRuntime):
    """A worker's LLM runtime: its own clients, and the driver's throttle actors by (provider, model)."""

    def __init__(self, *args: Any, throttles: dict[tuple[str, str], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._actors = throttles
        self._proxies: dict[tuple[str, str], ClusterThrottle] = {}

    def model(self, alias: str, extra_models: Iterable[ModelConfig] = ()) -> ModelHandle:
        handle = super().model(alias, extra_models)
        key = handle.resolved.throttle_key
        proxy = self._proxies.get(key)
        if proxy is None:
            actor = self._actors.get(key)
            if actor is None:
                raise RuntimeError(f"internal error: the driver started no throttle for model {key[0]}/{key[1]}")
            proxy = self._proxies[key] = ClusterThrottle(actor, handle.resolved.model.max_parallel_requests)
        return ModelHandle(handle.resolved, handle.client, proxy)
