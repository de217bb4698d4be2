"""streamer/groupshare.py: the group's budget split by lag, raised late, kept through failures."""

from __future__ import annotations

import asyncio
import logging

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given
from hypothesis import strategies as st

from streamer.groupshare import (
    FRESH_READ_SECONDS,
    LIGHT_LAG_EVENTS,
    POLL_INTERVAL_SECONDS,
    RAISE_AFTER_SECONDS,
    STALE_SECONDS,
    GroupShare,
    RaiseDelay,
    floor_of,
    reserve_of,
    shares,
)
from streamer.groupview import GroupView
from streamer.metrics import Metrics
from streamer.ratelimit import RateLimiter

lag = st.one_of(st.none(), st.integers(min_value=0, max_value=10**9))
groups = st.dictionaries(st.text(min_size=1, max_size=8), lag, min_size=2, max_size=40)
budgets = st.integers(min_value=1, max_value=100_000)


@given(budgets, groups)
def test_shares_leave_the_reserve_and_give_everyone_the_floor(
    budget: int, lags: dict[str, int | None]
) -> None:
    floor, reserve = floor_of(budget), reserve_of(budget)
    split = shares(budget, lags)
    assert split.keys() == lags.keys()
    assert all(share >= floor for share in split.values())
    if budget >= reserve + floor * len(lags):
        assert sum(split.values()) <= budget - reserve


@given(budgets, st.text(min_size=1), lag)
def test_a_member_alone_gets_the_whole_budget(budget: int, me: str, behind: int | None) -> None:
    assert shares(budget, {me: behind}) == {me: budget}


@given(budgets, groups)
def test_more_lag_never_means_a_smaller_share(budget: int, lags: dict[str, int | None]) -> None:
    split = shares(budget, lags)
    owners = sorted((behind, split[m]) for m, behind in lags.items() if behind is not None)
    assert [share for _, share in owners] == sorted(share for _, share in owners)


@given(budgets, groups)
def test_a_member_without_partitions_gets_the_floor_only(
    budget: int, lags: dict[str, int | None]
) -> None:
    split = shares(budget, lags)
    assert all(split[m] == floor_of(budget) for m, behind in lags.items() if behind is None)


@given(budgets, st.lists(st.integers(1, LIGHT_LAG_EVENTS), min_size=2, max_size=40))
def test_at_light_load_the_budget_splits_evenly(budget: int, light: list[int]) -> None:
    split = shares(budget, {f"m{i}": behind for i, behind in enumerate(light)})
    assert len(set(split.values())) == 1


@given(budgets, st.integers(2, 40))
def test_when_every_member_is_idle_the_budget_splits_evenly(budget: int, members: int) -> None:
    split = shares(budget, {f"m{i}": 0 for i in range(members)})
    assert len(set(split.values())) == 1
    if budget >= reserve_of(budget) + floor_of(budget) * members + members:
        assert next(iter(split.values())) > floor_of(budget)


@pytest.mark.parametrize("hot_lag", [1, 999, 5_000, 200_000])
def test_a_hot_member_gets_all_but_the_floors_of_idle_ones(hot_lag: int) -> None:
    split = shares(300, {"hot": hot_lag, "idle-1": 0, "idle-2": 0})
    assert split["idle-1"] == split["idle-2"] == floor_of(300)
    assert split["hot"] == 300 - reserve_of(300) - 2 * floor_of(300)


def test_light_members_keep_a_fair_share_beside_a_hot_one() -> None:
    split = shares(300, {"hot": 9_000, "light-1": 40, "light-2": 700})
    assert split["light-1"] == split["light-2"] > floor_of(300) + 20
    assert split["hot"] > 200
    assert sum(split.values()) <= 300 - reserve_of(300)


# offers of (seconds since the previous offer, share)
offers = st.lists(st.tuples(st.floats(0.0, 10.0), st.integers(1, 500)), max_size=30)


@given(st.integers(1, 500), offers, st.floats(0.0, 10.0))
def test_the_effective_share_is_the_lowest_offered_over_the_hold(
    initial: int, offered: list[tuple[float, int]], after: float
) -> None:
    hold = RAISE_AFTER_SECONDS
    delay = RaiseDelay(initial, 0.0, hold)
    steps = [(0.0, initial)]
    now = 0.0
    for gap, share in offered:
        now += gap
        delay.offer(share, now)
        steps.append((now, share))
        assert delay.effective(now) == _lowest_over(steps, now - hold)
    now += after
    assert delay.effective(now) == _lowest_over(steps, now - hold)


def _lowest_over(steps: list[tuple[float, int]], since: float) -> int:
    """The minimum of the step function `steps` over [since, last step's time or later]."""
    in_force = [share for at, share in steps if at <= since][-1:]
    later = [share for at, share in steps if at > since]
    return min(in_force + later)


def test_a_decrease_applies_at_once_and_an_increase_after_the_hold() -> None:
    delay = RaiseDelay(100, 0.0, hold=5.0)
    delay.offer(40, 1.0)
    assert delay.effective(1.0) == 40
    delay.offer(250, 2.0)
    assert delay.effective(6.9) == 40
    assert delay.effective(7.0) == 250


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Group:
    """A stand-in for the Kafka read: answers the view it holds, or raises `failure`."""

    def __init__(self, lags: dict[str, int | None], clock: FakeClock | None = None) -> None:
        self.lags = lags
        self.flowing: frozenset[str] = frozenset()
        self.stable = True
        self.failure: Exception | None = None
        self.clock = clock
        self.takes = 0.0  # seconds a read takes (on the fake clock)

    def read(self) -> GroupView:
        if self.clock is not None:
            self.clock.now += self.takes
        if self.failure is not None:
            raise self.failure
        return GroupView(dict(self.lags), self.flowing, self.stable)


class Member:
    """One replica's poller, with the limiter and metrics it drives."""

    def __init__(self, group: Group, me: str | None, clock: FakeClock, budget: int = 300) -> None:
        def member_id() -> str | None:
            return me

        self.clock = clock
        self.metrics = Metrics()
        self.limiter = RateLimiter(budget, 60.0, clock=clock)
        self.poller = GroupShare(budget, group.read, member_id, self.limiter, self.metrics, clock)

    @property
    def share(self) -> int:
        return self.limiter.share

    @property
    def failed_polls(self) -> float | None:
        name = "cohort_streamer_budget_poll_failures_total"
        return self.metrics.registry.get_sample_value(name)

    async def poll(self, after: float = 0.0) -> None:
        self.clock.now += after
        await self.poller.poll()
        self.poller.apply()


async def test_a_member_starts_at_the_floor_and_takes_everything_alone_at_once() -> None:
    clock = FakeClock()
    group = Group({"a": 0})
    member = Member(group, "a", clock)
    assert member.share == floor_of(300)
    await member.poll()
    assert member.share == 300
    member.poller.close()


async def test_a_member_not_in_the_description_yet_uses_the_floor() -> None:
    clock = FakeClock()
    member = Member(Group({"b": 0, "c": 0}), "a", clock)
    await member.poll(RAISE_AFTER_SECONDS * 3)
    assert member.share == floor_of(300)
    member.poller.close()


async def test_a_backlog_raises_the_share_only_after_it_held_for_the_raise_delay() -> None:
    clock = FakeClock()
    group = Group({"a": 0, "b": 0, "c": 0})
    member = Member(group, "a", clock)
    await member.poll(RAISE_AFTER_SECONDS)
    await member.poll(RAISE_AFTER_SECONDS)
    even = shares(300, group.lags)["a"]
    assert member.share == even
    group.lags["a"] = 500_000
    await member.poll(1.0)
    assert member.share == even
    await member.poll(RAISE_AFTER_SECONDS)
    assert member.share == shares(300, group.lags)["a"] > 0.9 * 300
    group.lags["b"] = 5_000_000  # another member is hotter now: a decrease, at once
    await member.poll(0.1)
    assert member.share == shares(300, group.lags)["a"] < 0.5 * 300
    member.poller.close()


@pytest.mark.parametrize(
    "failure",
    [KafkaException(KafkaError(KafkaError._TIMED_OUT)), TimeoutError(), RuntimeError("closed")],
    ids=["kafka", "timeout", "runtime"],
)
async def test_failed_reads_keep_the_share_until_stale_then_split_evenly(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    group = Group({"a": 800_000, "b": 0, "c": 0})
    member = Member(group, "a", clock)
    await member.poll()
    await member.poll(RAISE_AFTER_SECONDS)
    held = shares(300, group.lags)["a"]
    assert member.share == held
    group.failure = failure
    with caplog.at_level(logging.WARNING, logger="streamer.groupshare"):
        for _ in range(10):
            await member.poll(STALE_SECONDS / 10 - 0.01)
        assert member.share == held
        await member.poll(1.0)
    assert member.share == 300 // 3
    assert member.failed_polls == 11
    assert len([r for r in caplog.records if "cannot read the group" in r.message]) == 1
    group.failure = None
    await member.poll(RAISE_AFTER_SECONDS)
    await member.poll(RAISE_AFTER_SECONDS)
    assert member.share == held
    member.poller.close()


async def test_a_member_that_never_read_the_group_takes_the_budget_once_stale() -> None:
    clock = FakeClock()
    group = Group({"a": 0})
    group.failure = KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))
    member = Member(group, "a", clock)
    await member.poll()
    assert member.share == floor_of(300)
    await member.poll(STALE_SECONDS + 0.1)
    await member.poll(RAISE_AFTER_SECONDS)
    assert member.share == 300
    member.poller.close()


async def test_the_poller_applies_the_share_to_the_limiter_between_reads() -> None:
    clock = FakeClock()
    member = Member(Group({"a": 0}), "a", clock, budget=120)
    task = asyncio.create_task(member.poller.run_forever())
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
            if member.limiter.share == 120:
                break
        assert member.limiter.share == 120
    finally:
        task.cancel()
        member.poller.close()


def test_a_member_with_events_flowing_keeps_a_light_share_when_its_lag_reads_zero() -> None:
    split = shares(300, {"hot": 50_000, "light": 0, "idle": 0}, flowing={"light"})
    assert split["idle"] == floor_of(300) < split["light"]
    assert split["light"] > 0.02 * 300 + 4  # the weight of LIGHT_LAG_EVENTS, not the floor


async def test_a_light_member_whose_lag_flaps_to_zero_is_never_dropped_to_the_floor() -> None:
    clock = FakeClock()
    group = Group({"a": 0, "b": 300, "c": 200})
    group.flowing = frozenset({"a", "b", "c"})
    member = Member(group, "a", clock)
    await member.poll()
    await member.poll(RAISE_AFTER_SECONDS)
    steady = member.share
    for behind in (0, 300, 0, 0, 250, 0):  # committed lag reads 0 between two commits
        group.lags["a"] = behind
        await member.poll(POLL_INTERVAL_SECONDS)
        assert member.share >= steady > floor_of(300)
    member.poller.close()


async def test_while_the_group_rebalances_the_last_stable_shares_hold() -> None:
    clock = FakeClock()
    group = Group({"a": 90_000, "b": 0, "c": 0})
    member = Member(group, "a", clock)
    await member.poll()
    await member.poll(RAISE_AFTER_SECONDS)
    held = member.share
    assert held > 0.9 * 300
    group.lags = {"a": None, "b": None, "c": None}  # listed without partitions mid-rebalance
    group.stable = False
    for _ in range(5):
        await member.poll(POLL_INTERVAL_SECONDS)
        assert member.share == held
    member.poller.close()


async def test_a_slow_read_may_lower_the_share_but_never_raise_it() -> None:
    clock = FakeClock()
    group = Group({"a": 0, "b": 0, "c": 0}, clock)
    member = Member(group, "a", clock)
    await member.poll()
    await member.poll(RAISE_AFTER_SECONDS)
    even = member.share
    group.lags["a"] = 500_000
    group.takes = FRESH_READ_SECONDS + 0.5  # older than the others' lowering may be
    for _ in range(4):
        await member.poll(RAISE_AFTER_SECONDS)
        assert member.share == even
    group.lags["b"] = 9_000_000
    await member.poll()
    assert member.share < even  # a lower share from a slow read still applies
    member.poller.close()


async def test_a_bug_in_a_poll_is_logged_and_the_poller_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    member = Member(Group({"a": 0}), "a", clock, budget=120)
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise AssertionError("a bug")

    member.poller.poll = broken  # type: ignore[method-assign]
    task = asyncio.create_task(member.poller.run_forever())
    with caplog.at_level(logging.ERROR, logger="streamer.groupshare"):
        for _ in range(200):
            await asyncio.sleep(0.01)
            clock.now += 1.0
            if calls >= 2:
                break
    task.cancel()
    member.poller.close()
    assert calls >= 2
    assert any("poll failed" in r.message for r in caplog.records)
