"""streamer/ratelimit.py: no sliding window ever holds more sends than the budget."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.ratelimit import (
    DECREASE_FACTOR,
    MIN_LIMIT,
    RECOVERY_PER_WINDOW,
    WINDOW_MARGIN_SECONDS,
    RateLimiter,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def max_in_any_window(send_times: list[float], window: float) -> int:
    """The most sends any closed interval [t, t + window] holds (checks every window)."""
    times = sorted(send_times)
    most = 0
    j = 0
    for i in range(len(times)):
        # slide the right edge; j is one past the last send within window of times[i]
        j = max(j, i)
        while j < len(times) and times[j] - times[i] <= window:
            j += 1
        most = max(most, j - i)
    return most


def test_max_in_any_window_helper() -> None:
    assert max_in_any_window([], 1.0) == 0
    assert max_in_any_window([0, 0.5, 1.0, 1.01], 1.0) == 3
    assert max_in_any_window([0, 2, 4], 1.0) == 1


async def grab(limiter: RateLimiter) -> None:
    """acquire() when a slot is free must not wait."""
    await asyncio.wait_for(limiter.acquire(), 1.0)


# --- simulated sends on a fake clock ---


async def simulate(
    budget: int,
    window: float,
    arrivals: list[float],
    latencies: list[float],
    rate_limited: set[int],
    retry_after: float,
    step: float,
    server_at: tuple[float, ...] = (0.0,),
) -> tuple[list[float], list[float], RateLimiter]:
    """Requests arrive at `arrivals`; each is sent when the limiter has room, takes its latency,
    and (if its index is in rate_limited) comes back 429. Returns the send times and the times
    the server counted them: somewhere between send and response (fraction `server_at`)."""
    clock = FakeClock(0.0)
    limiter = RateLimiter(budget, window, clock)
    queue: deque[int] = deque()
    arriving = deque(sorted(arrivals))
    responses: list[tuple[float, int]] = []  # heap of (time, request index)
    sends: list[float] = []
    counted: list[float] = []
    index = 0
    while arriving or queue or responses:
        while arriving and arriving[0] <= clock.now:
            arriving.popleft()
            queue.append(index)
            index += 1
        while responses and responses[0][0] <= clock.now:
            _, done = heapq.heappop(responses)
            if done in rate_limited:
                limiter.on_rate_limited(retry_after)
            limiter.release()
        while queue and limiter.available() > 0:
            assert limiter.has_capacity()
            await grab(limiter)
            request = queue.popleft()
            sends.append(clock.now)
            latency = latencies[request % len(latencies)]
            counted.append(clock.now + latency * server_at[request % len(server_at)])
            heapq.heappush(responses, (clock.now + latency, request))
        if queue and limiter.available() <= 0:
            assert not limiter.has_capacity()
        upcoming = [clock.now + step]
        if arriving:
            upcoming.append(arriving[0])
        if responses:
            upcoming.append(responses[0][0])
        clock.now = max(clock.now, min(upcoming))
    return sends, counted, limiter


@given(
    budget=st.integers(min_value=1, max_value=12),
    window=st.sampled_from([1.0, 5.0, 60.0]),
    arrivals=st.lists(st.floats(min_value=0, max_value=30), min_size=1, max_size=80),
    latencies=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=10),
    rate_limited=st.sets(st.integers(min_value=0, max_value=80), max_size=5),
    retry_after=st.floats(min_value=0, max_value=10),
    step_fraction=st.sampled_from([0.04, 0.1, 0.37]),
    server_at=st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=1, max_size=5),
)
@settings(max_examples=100, deadline=None)
def test_no_sliding_window_ever_exceeds_the_budget(
    budget: int,
    window: float,
    arrivals: list[float],
    latencies: list[float],
    rate_limited: set[int],
    retry_after: float,
    step_fraction: float,
    server_at: list[float],
) -> None:
    sends, counted, _ = asyncio.run(
        simulate(
            budget,
            window,
            arrivals,
            latencies,
            rate_limited,
            retry_after,
            window * step_fraction,
            tuple(server_at),
        )
    )
    assert len(sends) == len(arrivals)  # every request is eventually sent
    assert max_in_any_window(sends, window) <= budget
    # the server counts each request at some moment between its send and its response
    assert max_in_any_window(counted, window) <= budget


def test_steady_overload_sends_the_full_budget_per_window_and_no_more() -> None:
    budget, window = 10, 6.0
    arrivals = [i * 0.05 for i in range(300)]  # far more demand than budget
    sends, _, _ = asyncio.run(simulate(budget, window, arrivals, [0.2], set(), 0.0, 0.01))
    assert max_in_any_window(sends, window) == budget
    # not overly conservative: a slot comes back one window (plus margin) after its response
    cycle = window + WINDOW_MARGIN_SECONDS + 0.2
    elapsed = sends[-1] - sends[0]
    assert len(sends) / budget <= elapsed / cycle + 1.01
    assert elapsed <= (len(sends) / budget) * (cycle + 0.05)


def test_a_full_budget_can_go_at_once() -> None:
    sends, _, _ = asyncio.run(simulate(7, 60.0, [0.0] * 7, [0.5], set(), 0.0, 0.5))
    assert sends == [0.0] * 7


# --- slot accounting on a fake clock ---


async def test_slot_is_held_from_send_until_a_window_after_the_response() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 10.0, clock)
    assert limiter.available() == 1
    await grab(limiter)
    assert limiter.available() == 0
    clock.advance(30)  # a slow response: still in flight
    assert limiter.available() == 0
    limiter.release()
    clock.advance(10.0 + WINDOW_MARGIN_SECONDS - 0.01)
    assert limiter.available() == 0
    clock.advance(0.01)
    assert limiter.available() == 1


async def test_in_flight_and_recent_requests_both_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 60.0, clock)
    await grab(limiter)
    await grab(limiter)
    limiter.release()
    assert limiter.available() == 1
    await grab(limiter)
    assert limiter.available() == 0
    assert not limiter.has_capacity()
    clock.advance(60 + WINDOW_MARGIN_SECONDS)
    assert limiter.available() == 1  # the released one expired; two are still in flight
    limiter.release()
    limiter.release()
    assert limiter.available() == 1
    clock.advance(60 + WINDOW_MARGIN_SECONDS)
    assert limiter.available() == 3


async def test_has_capacity() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 60.0, clock)
    assert limiter.has_capacity()
    await grab(limiter)
    assert limiter.has_capacity()
    await grab(limiter)
    assert not limiter.has_capacity()
    limiter.release()
    limiter.release()
    assert not limiter.has_capacity()
    clock.advance(61)
    assert limiter.has_capacity()
    limiter.on_rate_limited(5)
    assert not limiter.has_capacity()  # paused
    clock.advance(5)
    assert limiter.has_capacity()


# --- 429: multiplicative decrease, pause, additive recovery ---


async def test_on_rate_limited_halves_the_limit_and_pauses_until_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 60.0, clock)
    limiter.on_rate_limited(5.0)
    assert limiter.limit == math.floor(10 * DECREASE_FACTOR)
    assert limiter.available() == 0
    assert not limiter.has_capacity()
    clock.advance(4.99)
    assert limiter.available() == 0
    clock.advance(0.01)
    assert limiter.available() == 5
    assert limiter.has_capacity()


async def test_a_shorter_retry_after_never_shortens_an_earlier_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock)
    limiter.on_rate_limited(10.0)
    limiter.on_rate_limited(1.0)
    clock.advance(5)
    assert limiter.available() == 0
    clock.advance(5)
    assert limiter.available() > 0


async def test_repeated_429_never_drops_below_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, 60.0, clock)
    for _ in range(20):
        limiter.on_rate_limited(0)
    assert limiter.limit == int(MIN_LIMIT) == 1
    assert limiter.available() == 1


async def test_limit_recovers_additively_and_never_exceeds_the_budget() -> None:
    clock = FakeClock()
    budget = 20
    limiter = RateLimiter(budget, 60.0, clock)
    window = 60.0 + WINDOW_MARGIN_SECONDS
    limiter.on_rate_limited(0)
    assert limiter.limit == 10
    per_window = budget * RECOVERY_PER_WINDOW  # 2 per window
    start = clock.now
    samples = []
    for _ in range(200):
        clock.advance(window / 17)
        samples.append((clock.now - start, limiter.limit))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(samples))
    assert max(limit for _, limit in samples) == budget
    for elapsed, limit in samples:
        expected = min(budget, 10 + per_window * elapsed / window)
        assert limit <= budget
        assert abs(limit - math.floor(expected)) <= 1
    clock.advance(10 * window)
    assert limiter.limit == budget


async def test_recovery_half_way_then_another_429() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock)
    window = 60.0 + WINDOW_MARGIN_SECONDS
    limiter.on_rate_limited(0)  # 50
    clock.advance(2.5 * window)  # +25
    assert limiter.limit in (74, 75)
    limiter.on_rate_limited(0)  # halves what it had recovered to
    assert limiter.limit in (37, 38)


# --- real time: waiting, FIFO, and the window property on the event loop ---


async def test_real_time_window_property_and_fifo_order() -> None:
    budget, window = 5, 0.5
    limiter = RateLimiter(budget, window)
    sends: list[float] = []
    order: list[int] = []
    rnd = random.Random(7)

    async def request(i: int) -> None:
        await limiter.acquire()
        sends.append(time.monotonic())
        order.append(i)
        try:
            await asyncio.sleep(rnd.uniform(0, 0.02))
        finally:
            limiter.release()

    started = time.monotonic()
    tasks = [asyncio.create_task(request(i)) for i in range(15)]
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    elapsed = time.monotonic() - started
    assert order == list(range(15))  # first come, first served
    assert max_in_any_window(sends, window) <= budget
    # two full refills of the budget, each a window plus margin after the responses
    assert elapsed >= 2 * (window + WINDOW_MARGIN_SECONDS)
    assert elapsed < 2 * (window + WINDOW_MARGIN_SECONDS + 0.02) + 1.5


async def test_waiters_are_served_in_arrival_order_and_block_has_capacity() -> None:
    limiter = RateLimiter(1, 0.01)
    order: list[str] = []
    await limiter.acquire()

    async def waiter(name: str) -> None:
        await limiter.acquire()
        order.append(name)
        limiter.release()

    tasks = [asyncio.create_task(waiter(name)) for name in "abc"]
    await asyncio.sleep(0.01)
    assert not limiter.has_capacity()  # someone is queued
    limiter.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["a", "b", "c"]


async def test_acquire_waits_out_a_retry_after_pause() -> None:
    limiter = RateLimiter(5, 0.1)
    limiter.on_rate_limited(0.3)
    started = time.monotonic()
    await asyncio.wait_for(limiter.acquire(), 5)
    assert time.monotonic() - started >= 0.29
    limiter.release()


async def test_cancelled_waiter_takes_no_slot() -> None:
    limiter = RateLimiter(1, 0.05)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    await asyncio.sleep(0.05 + WINDOW_MARGIN_SECONDS + 0.01)
    assert limiter.available() == 1
    assert limiter.has_capacity()
