"""streamer/committer.py as the owner of commit timing: the interval, a revoke, the answer.

A fake source stands in for Kafka (tests/test_commit.py runs the committer on the real broker).
"""

from __future__ import annotations

import logging
from typing import cast

import pytest

from streamer.committer import Committer
from streamer.metrics import Metrics
from streamer.offsets import OffsetTracker, TopicPartition
from streamer.source import CommitResult, KafkaSource

P0: TopicPartition = ("events", 0)
P1: TopicPartition = ("events", 1)
P2: TopicPartition = ("events", 2)


class FakeSource:
    """Stores every partition except those in `refuse`; counts the commits asked of it."""

    def __init__(self, refuse: frozenset[TopicPartition] = frozenset()) -> None:
        self.generation = 0
        self.refuse = refuse
        self.commits: list[dict[TopicPartition, int]] = []

    def answer(self, points: dict[TopicPartition, int]) -> CommitResult:
        self.commits.append(dict(points))
        done = {tp: o for tp, o in points.items() if tp not in self.refuse}
        return CommitResult(done, {tp: "refused" for tp in points if tp in self.refuse})

    async def commit(self, points: dict[TopicPartition, int], generation: int) -> CommitResult:
        return self.answer(points)


class NoFlush:
    def __init__(self, points: dict[TopicPartition, int] | None = None) -> None:
        self.points = points or {}
        self.revoked: list[list[TopicPartition]] = []

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        return None

    async def revoking(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.revoked.append(partitions)
        return self.points

    async def lost(self, partitions: list[TopicPartition]) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker_at(points: dict[TopicPartition, int]) -> OffsetTracker:
    tracker = OffsetTracker()
    tracker.assign(list(points))
    tracker.seed(points)
    return tracker


def committer(
    source: FakeSource, tracker: OffsetTracker, clock: Clock, flush: NoFlush | None = None
) -> Committer:
    return Committer(
        cast(KafkaSource, source), flush or NoFlush(), tracker, Metrics(), 5.0, clock=clock
    )


@pytest.mark.parametrize("interval_steps", [1, 3])
async def test_tick_commits_once_per_interval(interval_steps: int) -> None:
    source, clock = FakeSource(), Clock()
    tracker = tracker_at({P0: 3})
    c = committer(source, tracker, clock)
    await c.tick()
    assert source.commits == []  # the first interval has not passed
    for step in range(interval_steps):
        clock.now += 4.9
        await c.tick()
        assert len(source.commits) == step
        clock.now += 0.1
        await c.tick()
        assert len(source.commits) == step + 1
        settled = tracker.track(P0, 10 + step, 10 + step, 0)  # consumed and settled at once
        tracker.consumed([settled])  # the watermark moves: there is something to commit


async def test_only_the_stored_partitions_are_recorded() -> None:
    source, clock = FakeSource(refuse=frozenset({P1})), Clock()
    tracker = tracker_at({P0: 3, P1: 4, P2: 5})
    await committer(source, tracker, clock).commit()
    assert tracker.commit_points() == {P1: 4}  # committed again next interval
    assert tracker.committed_offsets() == {P0: 3, P2: 5}


async def test_nothing_moved_nothing_committed() -> None:
    source, clock = FakeSource(), Clock()
    tracker = tracker_at({P0: 3})
    c = committer(source, tracker, clock)
    await c.commit()
    await c.commit()
    assert source.commits == [{P0: 3}]


async def test_a_revoke_commits_what_the_flush_freed_and_logs_refusals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, clock = FakeSource(refuse=frozenset({P1})), Clock()
    flush = NoFlush({P0: 7, P1: 2})
    c = committer(source, tracker_at({P0: 0, P1: 0}), clock, flush)
    points = await c.revoking([P0, P1])
    assert flush.revoked == [[P0, P1]]
    with caplog.at_level(logging.INFO, logger="streamer.committer"):
        c.commit_revoked(points, source.answer)
    assert source.commits == [{P0: 7, P1: 2}]
    text = caplog.text
    assert "committed 1 revoked partition(s) before release" in text
    assert "commit of revoked events[1] failed" in text


async def test_a_revoke_with_nothing_to_commit_commits_nothing() -> None:
    source, clock = FakeSource(), Clock()
    c = committer(source, tracker_at({P0: 0}), clock, NoFlush({}))
    c.commit_revoked(await c.revoking([P0]), source.answer)
    assert source.commits == []
