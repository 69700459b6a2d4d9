"""Adaptive concurrency for one (provider, model): AIMD that settles near what the server accepts.

The limit starts at ``max_parallel_requests`` and never exceeds it. A 429 halves it, but
only once per "epoch": answers to requests sent before the last decrease describe the old
limit and are ignored, as TCP ignores losses from the previous window. The limit at which
the 429 came is remembered as the *plateau*. Successes grow the limit back: quickly (one
step per quarter window) up to just below the plateau, then one step every few windows
above it, so the throttle spends its time just under the server's cap instead of
oscillating far below it. Retry-After is honoured by the retry loop, which sleeps without
holding a slot.
"""

from __future__ import annotations

import asyncio
from collections import deque


class AdaptiveThrottle:
    """A semaphore whose size adapts to 429 answers. Not thread-safe: one event loop at a time."""

    DECREASE = 0.5
    PROBE_WINDOWS = 4  # windows of successes per step above the plateau

    def __init__(self, max_parallel: int) -> None:
        self.ceiling = max_parallel
        self.limit = float(max_parallel)
        self.in_flight = 0
        self.epoch = 0
        self.plateau: float | None = None
        self._credit = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def slots(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to hand back to ``on_success``/``on_rate_limited``."""
        if self.in_flight < self.slots and not self._waiters:
            self.in_flight += 1
            return self.epoch
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was granted as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.slots:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def on_success(self, epoch: int) -> None:
        """Additive increase: one step per window of successes, slower above the plateau."""
        if self.limit >= self.ceiling:
            return
        below_plateau = self.plateau is None or self.limit + 1 < self.plateau
        self._credit += (4.0 if below_plateau else 1.0 / self.PROBE_WINDOWS) / self.limit
        if self._credit >= 1.0:
            self._credit = 0.0
            self.limit = min(float(self.ceiling), self.limit + 1)
            self._wake()

    def on_rate_limited(self, epoch: int) -> None:
        """Multiplicative decrease, once per epoch."""
        if epoch != self.epoch:
            return
        self.plateau = self.limit
        self.limit = max(1.0, self.limit * self.DECREASE)
        self._credit = 0.0
        self.epoch += 1
