"""Commit results are checked partition by partition (issue 13, item 8), on the real broker.

A refused partition is counted, logged, left unrecorded (so the next interval commits it
again) and never holds back the partitions the broker stored.
"""

from __future__ import annotations

import contextlib
import logging
from typing import NamedTuple

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from streamer.committer import Committer
from streamer.config import KafkaConfig
from streamer.dev.devkafka import create_topic
from streamer.metrics import Metrics
from streamer.offsets import OffsetTracker
from streamer.offsets import TopicPartition as TP
from streamer.source import CommitNow, KafkaSource, commit_offsets
from tests.fixtures.kafka import MakeTopic


class NoRebalanceWork:
    async def assigned(self, partitions: list[TP]) -> None:
        return None

    async def revoking(self, partitions: list[TP]) -> dict[TP, int]:
        return {}

    def commit_revoked(self, points: dict[TP, int], commit: CommitNow) -> None:
        return None

    async def lost(self, partitions: list[TP]) -> None:
        return None


def stored_offsets(bootstrap: str, group: str, partitions: list[TP]) -> dict[TP, int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        answer = reader.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
    finally:
        reader.close()
    return {(tp.topic, tp.partition): tp.offset for tp in answer if tp.offset >= 0}


async def started_source(bootstrap: str, topic: str, group: str) -> KafkaSource:
    config = KafkaConfig(
        bootstrap_servers=bootstrap, group_id=group, topics=[topic], dlq_topic="unused"
    )
    source = KafkaSource(config, revoke_deadline_seconds=5)
    await source.start()
    await source.subscribe(NoRebalanceWork())
    for _ in range(100):  # join the group: consume until the assignment arrives
        await source.consume(10, 0.2)
        if source.assignment_received:
            return source
    raise AssertionError("no assignment within 20 s")


def tracker_with(points: dict[TP, int]) -> OffsetTracker:
    tracker = OffsetTracker()
    tracker.assign(list(points))
    tracker.seed(points)  # nothing consumed: each watermark is its start position
    return tracker


@pytest.mark.parametrize("refused", [1, 3], ids=lambda n: f"{n}-refused")
async def test_a_refused_partition_is_retried_and_never_holds_back_the_others(
    refused: int,
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    unique_group: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = make_topic(partitions=3, prefix="commits")
    source = await started_source(kafka_bootstrap, topic, unique_group)
    try:
        good = {(topic, p): 10 + p for p in range(3)}
        # partitions of a topic that does not exist (a deleted topic): the broker refuses them
        bad = {(f"gone-{unique_group}", p): 5 for p in range(refused)}
        tracker = tracker_with({**good, **bad})
        metrics = Metrics()
        committer = Committer(source, NoRebalanceWork(), tracker, metrics, interval_seconds=5)
        with caplog.at_level(logging.WARNING, logger="streamer.committer"):
            await committer.commit()
        assert stored_offsets(kafka_bootstrap, unique_group, list(good)) == good
        assert metrics.commit_failures._value.get() == refused
        # the stored partitions are recorded; the refused ones are committed again next time
        assert set(tracker.commit_points()) == set(bad)
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == refused, [r.getMessage() for r in caplog.records]

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="streamer.committer"):
            await committer.commit()
        assert metrics.commit_failures._value.get() == 2 * refused  # counted every time
        assert not caplog.records, "a refusal that goes on is logged once, not every interval"
        assert set(tracker.commit_points()) == set(bad)
    finally:
        await source.close()


async def test_a_refused_partition_commits_once_the_cause_is_fixed(
    kafka_bootstrap: str, make_topic: MakeTopic, unique_group: str
) -> None:
    """Refused while its topic is missing; committed on the next interval once it exists."""
    topic = make_topic(partitions=1, prefix="commits")
    source = await started_source(kafka_bootstrap, topic, unique_group)
    later = f"later-{unique_group}"
    try:
        tracker = tracker_with({(topic, 0): 3, (later, 0): 2})
        metrics = Metrics()
        committer = Committer(source, NoRebalanceWork(), tracker, metrics, interval_seconds=5)
        await committer.commit()
        assert set(tracker.commit_points()) == {(later, 0)}
        create_topic(kafka_bootstrap, later, 1)
        await committer.commit()
        assert tracker.commit_points() == {}
        assert stored_offsets(kafka_bootstrap, unique_group, [(later, 0)]) == {(later, 0): 2}
        assert metrics.commit_failures._value.get() == 1
    finally:
        await source.close()
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_topics([later], operation_timeout=10).values():
            with contextlib.suppress(Exception):
                future.result(timeout=15)


class Answer(NamedTuple):
    """One partition of a commit's answer (confluent_kafka.TopicPartition's fields)."""

    topic: str
    partition: int
    offset: int
    error: KafkaError | None


class FakeConsumer:
    """A consumer whose commit answers with per-partition errors instead of raising."""

    def __init__(self, refuse: set[TP]) -> None:
        self.refuse = refuse

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[Answer]:
        refused = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)
        return [
            Answer(
                tp.topic,
                tp.partition,
                tp.offset,
                refused if (tp.topic, tp.partition) in self.refuse else None,
            )
            for tp in offsets
        ]


@pytest.mark.parametrize("refuse", [set(), {("t", 1)}, {("t", 0), ("t", 2)}], ids=str)
def test_errors_inside_a_commit_answer_are_read(refuse: set[TP]) -> None:
    points = {("t", 0): 1, ("t", 1): 2, ("t", 2): 3}
    result = commit_offsets(FakeConsumer(refuse), points)  # type: ignore[arg-type]
    assert set(result.failed) == refuse
    assert result.done == {tp: o for tp, o in points.items() if tp not in refuse}
