"""Adaptive concurrency for one (provider, model): AIMD that settles near what the server accepts.

The limit starts at ``max_parallel_requests`` and never exceeds it.

- *Multiplicative decrease*: a 429 halves the limit, once per "epoch": answers to requests
  sent before the last decrease describe the old limit and are ignored, as TCP ignores
  losses from the previous window. The decrease is floored at the last level that served a
  full window of requests without a 429 (*good*), minus nothing: so a server capping at 8
  sends a throttle probing 9 back to 8, not to 4.5. The floor is used once; if 429s go on
  (the server's capacity really dropped), the next epochs halve without it.
- *Additive increase*: one step per window (``limit`` successes). The limit at which the
  429 came is the *plateau*; next to it the limit grows by one every ``probe_windows``
  windows, an interval that doubles each time a probe hits the same plateau again. A limit
  that gets past the plateau without a 429 forgets it (the server got faster).

So the throttle spends its time just under the server's cap instead of oscillating far
below it, and probes less and less. Retry-After is honoured by the retry loop, which sleeps
without holding a slot, and retried requests go to the front of the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque


class AdaptiveThrottle:
    """A semaphore whose size adapts to 429 answers. Not thread-safe: one event loop at a time."""

    DECREASE = 0.5
    PROBE_WINDOWS = 4  # windows of successes per step at the plateau, at first
    MAX_PROBE_WINDOWS = 16

    def __init__(self, max_parallel: int) -> None:
        self.ceiling = max_parallel
        self.limit = float(max_parallel)
        self.in_flight = 0
        self.epoch = 0
        self.plateau: float | None = None
        self.good: int | None = None  # slots that served a full window without a 429
        self.probe_windows = self.PROBE_WINDOWS
        self._credit = 0.0
        self._streak = 0  # successes since the last 429 or limit change
        self._waiters: deque[asyncio.Future[int]] = deque()

    @property
    def slots(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self, *, first: bool = False) -> int:
        """Wait for a slot (``first``: ahead of the queue, for retries); returns the epoch to hand
        back to ``on_success``/``on_rate_limited``."""
        if self.in_flight < self.slots and not self._waiters:
            self.in_flight += 1
            return self.epoch
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            return await waiter  # the epoch at the time the slot was granted
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was granted as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.slots:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(self.epoch)

    def on_success(self, epoch: int) -> None:
        """Additive increase: one step per window of successes; near the plateau, one step every
        ``probe_windows`` windows; past it, the plateau is stale and forgotten."""
        self._streak += 1
        if self._streak >= self.slots and (self.good is None or self.slots > self.good):
            self.good = self.slots
        if self.limit >= self.ceiling:
            return
        if self.plateau is not None and self.limit >= self.plateau + 1:
            self.plateau, self.probe_windows = None, self.PROBE_WINDOWS
        probing = self.plateau is not None and self.limit + 1 >= self.plateau
        self._credit += (1.0 / self.probe_windows if probing else 1.0) / self.limit
        if self._credit >= 1.0:
            self._credit = 0.0
            self._streak = 0
            self.limit = min(float(self.ceiling), self.limit + 1)
            self._wake()

    def on_rate_limited(self, epoch: int) -> None:
        """Multiplicative decrease, once per epoch, floored once at the last good level."""
        self._streak = 0
        if epoch != self.epoch:
            return
        if self.plateau is not None and abs(self.plateau - self.limit) < 1:
            self.probe_windows = min(self.MAX_PROBE_WINDOWS, self.probe_windows * 2)
        else:
            self.probe_windows = self.PROBE_WINDOWS
        self.plateau = self.limit
        floor = min(self.good, self.slots - 1) if self.good is not None else 1
        self.good = None
        self.limit = max(1.0, float(floor), self.limit * self.DECREASE)
        self._credit = 0.0
        self.epoch += 1
