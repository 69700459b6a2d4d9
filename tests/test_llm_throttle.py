"""The adaptive throttle's decisions, step by step (no network)."""

from __future__ import annotations

import asyncio

from gristmill.llm.throttle import AdaptiveThrottle


def succeed(throttle: AdaptiveThrottle, n: int) -> None:
    for _ in range(n):
        throttle.on_success(throttle.epoch)


def test_starts_at_the_ceiling_and_never_exceeds_it() -> None:
    throttle = AdaptiveThrottle(8)
    assert throttle.slots == 8
    succeed(throttle, 1000)
    assert throttle.slots == 8


def test_one_decrease_per_epoch() -> None:
    throttle = AdaptiveThrottle(16)
    epoch = throttle.epoch
    for _ in range(8):  # a burst of 429s for requests sent under the old limit
        throttle.on_rate_limited(epoch)
    assert throttle.slots == 8 and throttle.epoch == epoch + 1
    throttle.on_rate_limited(throttle.epoch)
    assert throttle.slots == 4


def test_probe_above_a_good_level_falls_back_to_it_not_to_half() -> None:
    throttle = AdaptiveThrottle(16)
    throttle.on_rate_limited(throttle.epoch)  # 16 -> 8
    succeed(throttle, 8)  # a full window at 8: 'good', and one additive step to 9
    assert throttle.slots == 9 and throttle.good == 8
    throttle.on_rate_limited(throttle.epoch)  # the server caps at 8
    assert throttle.slots == 8


def test_probes_get_rarer_at_the_same_plateau() -> None:
    throttle = AdaptiveThrottle(16)
    throttle.on_rate_limited(throttle.epoch)
    intervals = []
    for _ in range(4):
        count = 0
        while throttle.slots < 9:
            throttle.on_success(throttle.epoch)
            count += 1
        intervals.append(count)
        throttle.on_rate_limited(throttle.epoch)
        assert throttle.slots == 8
    assert intervals[1] < intervals[2] < intervals[3]


def test_capacity_drop_halves_repeatedly_then_recovers() -> None:
    throttle = AdaptiveThrottle(64)
    succeed(throttle, 64)
    for _ in range(6):
        throttle.on_rate_limited(throttle.epoch)
    assert throttle.slots <= 4
    succeed(throttle, 5000)
    assert throttle.slots == 64


def test_waiters_are_served_in_order_and_retries_first() -> None:
    async def main() -> list[str]:
        throttle = AdaptiveThrottle(1)
        order: list[str] = []
        await throttle.acquire()

        async def worker(name: str, first: bool) -> None:
            await throttle.acquire(first=first)
            order.append(name)
            throttle.release()

        tasks = [asyncio.create_task(worker("a", False)), asyncio.create_task(worker("b", False))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(worker("retry", True)))
        await asyncio.sleep(0)
        throttle.release()
        await asyncio.gather(*tasks)
        assert throttle.in_flight == 0
        return order

    assert asyncio.run(main()) == ["retry", "a", "b"]


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def main() -> int:
        throttle = AdaptiveThrottle(1)
        await throttle.acquire()
        waiter = asyncio.create_task(throttle.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        throttle.release()
        await asyncio.gather(waiter, return_exceptions=True)
        return throttle.in_flight

    assert asyncio.run(main()) == 0


def test_only_a_429_at_the_lowest_limit_pauses_new_requests() -> None:
    async def main() -> tuple[list[bool], bool]:
        throttle = AdaptiveThrottle(4)
        paused = []
        for _ in range(3):  # 4 -> 2 -> 1: each refusal halves; halving is what a capped server needs
            epoch = await throttle.acquire()
            throttle.on_rate_limited(epoch, pause=30)
            throttle.release()
            paused.append(throttle.paused())
        waiter = asyncio.ensure_future(throttle.acquire())
        await asyncio.sleep(0.05)
        blocked = not waiter.done()  # a free slot, but paused
        waiter.cancel()
        return paused, blocked

    assert asyncio.run(main()) == ([False, False, True], True)


def test_a_429_above_the_lowest_limit_does_not_pause() -> None:
    throttle = AdaptiveThrottle(16)
    throttle.on_rate_limited(throttle.epoch, pause=30)
    throttle.on_rate_limited(throttle.epoch, pause=30)  # refused again at 8: halve to 4, no pause
    assert not throttle.paused() and throttle.slots == 4


def test_a_partly_refused_burst_locates_the_cap_without_pausing() -> None:
    throttle = AdaptiveThrottle(16)
    epoch = throttle.epoch
    for _ in range(8):  # 16 sent, 8 refused (with Retry-After), 8 accepted
        throttle.on_rate_limited(epoch, pause=0.5)
    for _ in range(8):
        throttle.on_success(epoch)
    assert throttle.slots == 8 and throttle.plateau == 9 and not throttle.paused()


def test_an_outage_does_not_delay_recovery() -> None:
    throttle = AdaptiveThrottle(16)
    for _ in range(4):  # every request refused, epoch after epoch
        throttle.on_rate_limited(throttle.epoch, pause=0.5)
    succeed(throttle, 5000)
    assert throttle.slots == 16
