"""streamer/ratelimit.py: no sliding window ever holds more sends than the share in force;
requests leave at the paced rate after a small burst; a 429 pauses and slows the pacing, never
below half the share."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.ratelimit import (
    DECREASE_FACTOR,
    MIN_PACING,
    PACING_MARGIN_SECONDS,
    WINDOW_MARGIN_SECONDS,
    RateLimiter,
    burst_of,
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


def full_pace(share: int, window: float) -> float:
    """Tokens per second at full pacing, as the module docstring states it."""
    return max(1, share - burst_of(share)) / (window + PACING_MARGIN_SECONDS)


@pytest.mark.parametrize(("share", "burst"), [(1, 1), (49, 1), (100, 2), (300, 5), (10**6, 5)])
def test_burst_is_two_percent_of_the_share_from_one_to_five(share: int, burst: int) -> None:
    assert burst_of(share) == burst


# --- the schedule of sends: hard rule under any mix of operations ---

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(min_value=0, max_value=0.5)),  # of a window
        st.tuples(st.just("send"), st.integers(min_value=1, max_value=6)),
        st.tuples(st.just("respond"), st.integers(min_value=1, max_value=6)),
        st.tuples(st.just("share"), st.integers(min_value=-1, max_value=25)),
        st.tuples(st.just("429"), st.floats(min_value=0, max_value=3)),
    ),
    max_size=150,
)


async def run_schedule(
    budget: int, window: float, operations: list[tuple[str, float]], vary_share: bool
) -> list[tuple[float, int]]:
    """Apply the operations; returns each send's time and the share in force at it."""
    clock = FakeClock(0.0)
    limiter = RateLimiter(budget, window, clock)
    sends: list[tuple[float, int]] = []
    in_flight = 0
    for op, arg in operations:
        if op == "advance":
            clock.advance(arg * window)
        elif op == "send":
            for _ in range(int(arg)):
                if limiter.available() <= 0:
                    assert not limiter.has_capacity()
                    break
                assert limiter.has_capacity()
                await grab(limiter)
                sends.append((clock.now, limiter.share))
                in_flight += 1
        elif op == "respond":
            for _ in range(min(in_flight, int(arg))):
                limiter.release()
                in_flight -= 1
        elif op == "share" and vary_share:
            limiter.set_share(int(arg))
            assert limiter.available() <= burst_of(limiter.share)
        elif op == "429":
            limiter.on_rate_limited(arg)
            assert limiter.available() == 0 or arg == 0
    return sends


@given(
    budget=st.integers(min_value=1, max_value=20),
    window=st.sampled_from([1.0, 5.0, 60.0]),
    operations=OPERATIONS,
    vary_share=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_no_window_ever_holds_more_sends_than_the_share_in_force(
    budget: int, window: float, operations: list[tuple[str, float]], vary_share: bool
) -> None:
    """A send's slot is held from the send until a window after its response, so every send in
    the window ending at a send still holds its slot then: at most the share in force."""
    sends = asyncio.run(run_schedule(budget, window, operations, vary_share))
    times = [t for t, _ in sends]
    for t, share in sends:
        assert sum(1 for other in times if t - window <= other <= t) <= share
    if not vary_share:
        assert max_in_any_window(times, window) <= budget


# --- pacing ---


def test_steady_overload_leaves_at_the_paced_rate_after_one_burst() -> None:
    budget, window, step = 300, 60.0, 0.01
    arrivals = [0.0] * 400  # far more demand than budget, all at once
    sends, _, _ = asyncio.run(simulate(budget, window, arrivals, [0.2], set(), 0.0, step))
    burst, pace = burst_of(budget), full_pace(budget, window)
    assert sends[:burst] == [0.0] * burst
    gaps = [b - a for a, b in itertools.pairwise(sends[burst - 1 :])]
    assert all(1 / pace - step <= gap <= 1 / pace + step for gap in gaps), (min(gaps), max(gaps))
    # evenly spread: no window fills the budget (nor then starves)
    most = max_in_any_window(sends, window)
    assert most <= burst + window * pace + 1 < budget
    assert most >= burst + window * pace - 1


def test_light_load_goes_at_once() -> None:
    """4 requests every second (2 cohorts, both actions) stay under the burst and the pace."""
    arrivals = [second + 0.0 for second in range(30) for _ in range(4)]
    sends, _, _ = asyncio.run(simulate(300, 60.0, arrivals, [0.1], set(), 0.0, 0.01))
    assert sends == arrivals


# --- slot accounting on a fake clock ---


async def test_slot_is_held_from_send_until_a_window_after_the_response() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 10.0, clock)
    assert limiter.available() == 1
    await grab(limiter)
    assert limiter.available() == 0 and limiter.used() == 1
    clock.advance(30)  # a slow response: still in flight (and the bucket refilled)
    assert limiter.available() == 0
    limiter.release()
    clock.advance(10.0 + WINDOW_MARGIN_SECONDS - 0.01)
    assert limiter.available() == 0 and limiter.used() == 1
    clock.advance(0.01)
    assert limiter.available() == 1 and limiter.used() == 0


async def test_in_flight_and_recent_requests_both_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 10.0, clock)  # one token every 5.5 s; a slot held 10.25 s
    token = 1 / full_pace(3, 10.0)
    for _ in range(3):
        await grab(limiter)
        clock.advance(token)
    assert limiter.used() == 3
    limiter.release()  # the first: held for another window
    assert limiter.available() == 0  # a token, but the three slots are held
    clock.advance(10.0 + WINDOW_MARGIN_SECONDS)
    assert limiter.used() == 2 and limiter.available() == 1  # the others are still in flight
    await grab(limiter)
    for _ in range(3):
        limiter.release()
    assert limiter.used() == 3 and limiter.available() == 0
    clock.advance(10.0 + WINDOW_MARGIN_SECONDS)
    assert limiter.used() == 0
    assert limiter.available() == 1  # the log has room for three: the bucket holds one


async def test_has_capacity() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock)
    for _ in range(burst_of(100)):
        assert limiter.has_capacity()
        await grab(limiter)
    assert not limiter.has_capacity()  # the burst is spent
    clock.advance(1 / full_pace(100, 60.0) + 1e-9)
    assert limiter.has_capacity()
    limiter.on_rate_limited(5)
    assert not limiter.has_capacity()  # paused
    clock.advance(5)
    assert not limiter.has_capacity()  # the bucket starts again once the pause ends
    clock.advance(1 / (DECREASE_FACTOR * full_pace(100, 60.0)) + 1e-6)
    assert limiter.has_capacity()


# --- the share: set at runtime by the group ---


async def test_a_decrease_applies_at_once_and_held_slots_stay_held() -> None:
    clock = FakeClock()
    limiter = RateLimiter(300, 60.0, clock)
    await grab(limiter)
    await grab(limiter)
    assert limiter.available() == 3
    limiter.set_share(100)  # burst 2: the bucket is capped to it
    assert limiter.share == 100 and limiter.available() == 2
    limiter.set_share(1)
    assert limiter.available() == 0 and limiter.used() == 2
    limiter.release()
    limiter.release()
    clock.advance(60 + WINDOW_MARGIN_SECONDS - 0.01)
    assert limiter.available() == 0  # two held slots over a share of one: none is free
    clock.advance(0.01)
    assert limiter.available() == 1
    assert limiter.budget == 300  # the configured workspace budget is not the share


async def test_an_increase_applies_from_now_on_and_is_never_back_dated() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock)
    await grab(limiter)
    await grab(limiter)  # the bucket is empty
    clock.advance(0.3)
    limiter.set_share(300)  # what accrued until now accrued at the old pace
    old_gain = 0.3 * full_pace(100, 60.0)
    assert limiter.available() == 0
    clock.advance((1 - old_gain) / full_pace(300, 60.0) - 0.001)
    assert limiter.available() == 0
    clock.advance(0.002)
    assert limiter.available() == 1
    clock.advance(10)
    assert limiter.available() == burst_of(300)


# --- 429: pause, slower pacing, linear recovery ---


async def test_a_429_pauses_until_retry_after_and_slows_the_pacing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(300, 60.0, clock)
    limiter.on_rate_limited(5.0)
    assert limiter.share == 300  # the hard rule's limit is not lowered
    assert limiter.paced_share == pytest.approx(300 * DECREASE_FACTOR)
    assert limiter.available() == 0 and not limiter.has_capacity()
    clock.advance(4.99)
    assert limiter.available() == 0
    clock.advance(0.01)  # the pause is over; the bucket starts from empty
    assert limiter.available() == 0
    assert limiter.pace_per_second() == pytest.approx(DECREASE_FACTOR * full_pace(300, 60.0))
    clock.advance(1.01 / limiter.pace_per_second())
    assert limiter.available() == 1


async def test_429s_during_one_pause_count_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(300, 60.0, clock)
    limiter.on_rate_limited(2.0)
    for _ in range(7):  # the answers to requests already in flight
        clock.advance(0.1)
        limiter.on_rate_limited(2.0)
    assert limiter.paced_share == pytest.approx(300 * DECREASE_FACTOR)
    clock.advance(2.0)  # the pause (extended by the last one) is over: a new 429 counts
    limiter.on_rate_limited(1.0)
    assert limiter.paced_share == pytest.approx(300 * DECREASE_FACTOR**2)


async def test_a_shorter_retry_after_never_shortens_an_earlier_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock)
    limiter.on_rate_limited(10.0)
    limiter.on_rate_limited(1.0)
    clock.advance(5)
    assert limiter.available() == 0
    clock.advance(10)
    assert limiter.available() > 0


async def test_a_storm_of_429s_never_paces_below_half_and_recovers_within_a_window() -> None:
    clock = FakeClock()
    share, window = 300, 60.0
    limiter = RateLimiter(share, window, clock)
    lowest = float(share)
    for _ in range(100):
        limiter.on_rate_limited(0.5)
        lowest = min(lowest, limiter.paced_share)
        clock.advance(0.6)  # each 429 comes after the previous pause: every one counts
        lowest = min(lowest, limiter.paced_share)
    assert lowest >= MIN_PACING * share
    limiter.on_rate_limited(0.5)
    assert limiter.paced_share < 0.52 * share
    clock.advance(0.5)  # the pause ends; the recovery runs linearly from here
    samples = []
    for _ in range(12):
        clock.advance(window / 12)
        samples.append(limiter.paced_share)
    assert all(a < b for a, b in itertools.pairwise(samples[:-1]))
    assert samples[5] == pytest.approx(share * (MIN_PACING + 0.5 * 6 / 12), rel=0.05)
    assert samples[-1] == pytest.approx(share)  # full again within one window
    assert limiter.pace_per_second() == pytest.approx(full_pace(share, window))


# --- real time: waiting, FIFO, and the window property on the event loop ---


async def test_real_time_window_property_pacing_and_fifo_order() -> None:
    budget, window = 20, 0.2  # a burst of 1, then one token every 63 ms
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

    tasks = [asyncio.create_task(request(i)) for i in range(12)]
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == list(range(12))  # first come, first served
    assert max_in_any_window(sends, window) <= budget
    # never faster than the pace: the bucket refills one token per 1/pace after the burst
    assert sends[-1] - sends[0] >= (12 - burst_of(budget)) / full_pace(budget, window) - 0.01


async def test_waiters_are_served_in_arrival_order_and_block_has_capacity() -> None:
    limiter = RateLimiter(300, 0.01)  # a burst of 5, then a token every 3.4 ms
    order: list[str] = []
    for _ in range(burst_of(300)):
        await limiter.acquire()

    async def waiter(name: str) -> None:
        await limiter.acquire()
        order.append(name)
        limiter.release()

    tasks = [asyncio.create_task(waiter(name)) for name in "abc"]
    await asyncio.sleep(0)
    assert not limiter.has_capacity()  # someone is queued
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["a", "b", "c"]
    for _ in range(burst_of(300)):
        limiter.release()


async def test_acquire_waits_out_a_retry_after_pause() -> None:
    limiter = RateLimiter(300, 0.1)
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
    assert limiter.used() == 1
    limiter.release()
    await asyncio.sleep(0.05 + WINDOW_MARGIN_SECONDS + 0.01)
    assert limiter.used() == 0
    assert not limiter._turn.locked()
