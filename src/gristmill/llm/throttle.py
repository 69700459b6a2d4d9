"""Adaptive concurrency for one (provider, model): AIMD that settles near what the server accepts.

The limit starts at ``max_parallel_requests`` and never exceeds it (aliases of one (provider,
model) with different ``max_parallel_requests`` share one throttle capped at the smallest).

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

- *Pause*: a refused request always waits its ``Retry-After`` (else the retry backoff)
  before it is sent again. The whole (provider, model) pauses for that long, no new request
  starting, only when halving cannot help any more: a request is refused while the limit is
  already 1. A server capping concurrency is met by the halvings alone (16 -> 8 -> 4 settles
  on a cap of 4 without a pause, as answers in flight come back); a server refusing
  everything draws one 429 per halving, about ``2 * max_parallel_requests`` in all, and then
  one request per pause.

So the throttle spends its time just under the server's cap instead of oscillating far
below it, and probes less and less.
"""

from __future__ import annotations

import asyncio
import time
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
        self.paused_until = 0.0  # time.monotonic() before which no new request starts
        # Some answer (any HTTP status) came back from the endpoint: from then on a refused
        # connection is an outage to ride out with retries, not a wrong or dead endpoint.
        self.reached = False
        self._burst: tuple[float, int] | None = None  # (limit, 429s) of the epoch just decreased
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    @property
    def slots(self) -> int:
        return max(1, int(self.limit))

    def lower_ceiling(self, max_parallel: int) -> None:
        """Another alias of the same (provider, model) allows fewer requests: the smallest wins."""
        if max_parallel < self.ceiling:
            self.ceiling = max_parallel
            self.limit = min(self.limit, float(max_parallel))
            if self.good is not None:
                self.good = min(self.good, max_parallel)

    def paused(self) -> bool:
        return time.monotonic() < self.paused_until

    def pause(self, seconds: float) -> None:
        """No new request starts for ``seconds`` (a 429's Retry-After); extends, never shortens."""
        now = time.monotonic()
        if seconds > 0 and now + seconds > self.paused_until:
            self.paused_until = now + seconds

    async def acquire(self, *, first: bool = False) -> int:
        """Wait for a slot (``first``: ahead of the queue, for retries) and for any pause to pass;
        returns the epoch to hand back to ``on_success``/``on_rate_limited``."""
        while True:
            if self.in_flight < self.slots and not self._waiters and not self.paused():
                self.in_flight += 1
                return self.epoch
            epoch = await self._wait(first)
            if not self.paused():
                return epoch
            # A pause began between the grant and this task running: give the slot back and
            # wait again, at the front (no new request may start during a pause).
            self.in_flight -= 1
            first = True

    async def _wait(self, first: bool) -> int:
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        self._wake()  # schedules the end-of-pause timer when paused
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
        if not self._waiters:
            return
        remaining = self.paused_until - time.monotonic()
        if remaining > 0:
            self._schedule_wake(remaining)
            return
        while self._waiters and self.in_flight < self.slots:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(self.epoch)

    def _schedule_wake(self, delay: float) -> None:
        """One timer per pause, on the running loop (a throttle outlives event loops)."""
        loop = asyncio.get_running_loop()
        timer = self._timer
        if timer is not None and not timer.cancelled() and self._timer_loop is loop \
                and timer.when() >= loop.time() + delay - 0.001:
            return
        if timer is not None:
            timer.cancel()
        self._timer_loop = loop
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()

    def on_success(self, epoch: int) -> None:
        """Additive increase: one step per window of successes; near the plateau, one step every
        ``probe_windows`` windows; past it, the plateau is stale and forgotten."""
        if epoch == self.epoch - 1 and self._burst is not None:
            # A request sent with the 429-ed ones was accepted: the server's cap is about the
            # old limit minus the 429s. Probe toward it, not toward the old limit, and not soon.
            old_limit, refused = self._burst
            self._burst = None
            if self.plateau is not None and refused < old_limit:
                self.plateau = max(self.limit + 1, min(self.plateau, old_limit - refused + 1))
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

    def on_rate_limited(self, epoch: int, *, pause: float = 0.0) -> None:
        """Multiplicative decrease, once per epoch, floored once at the last good level; and a
        pause of ``pause`` seconds for every new request when the limit is already 1."""
        if epoch == self.epoch and self.slots <= 1:
            self.pause(pause)
        self._streak = 0
        if epoch == self.epoch - 1 and self._burst is not None:
            self._burst = (self._burst[0], self._burst[1] + 1)
        if epoch != self.epoch:
            return
        self._burst = (self.limit, 1)
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
