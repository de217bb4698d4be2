"""The Kafka test bed itself, on the real broker: group commits resume exactly, restarts keep data.

Everything else about consuming and committing builds on these two properties, so they are
checked first and on their own.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streamer.dev.devkafka import DevKafka, client_conf
from tests.fixtures.kafka import MakeTopic


class Record(NamedTuple):
    partition: int
    offset: int
    key: bytes
    value: bytes


def consumer_conf(bootstrap: str, group: str) -> dict[str, Any]:
    """The settings the streamer uses: classic protocol, cooperative-sticky, manual commits."""
    return client_conf(
        bootstrap,
        **{
            "group.id": group,
            "group.protocol": "classic",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        },
    )


def produce_keyed(bootstrap: str, topic: str, count: int) -> list[Record]:
    """Produce `count` messages keyed by uid; return what the broker acknowledged."""
    acked: list[Record] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value()))

    producer = Producer(client_conf(bootstrap, acks="all", **{"enable.idempotence": True}))
    for i in range(count):
        producer.produce(topic, key=f"uid-{i}", value=f"event-{i}", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(acked) == count
    return acked


def consume(
    consumer: Any, expected: int, timeout: float = 60.0, settle: float = 0.0
) -> list[Record]:
    """Poll until `expected` messages arrived, then `settle` seconds more to catch extras."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        records.extend(_poll(consumer, 0.5))
    settle_until = time.monotonic() + settle
    while time.monotonic() < settle_until:
        records.extend(_poll(consumer, 0.2))
    return records


def _poll(consumer: Any, timeout: float) -> list[Record]:
    msg = consumer.poll(timeout)
    if msg is None:
        return []
    assert msg.error() is None, msg.error()
    return [Record(msg.partition(), msg.offset(), msg.key(), msg.value())]


def by_partition(records: list[Record]) -> dict[int, list[Record]]:
    grouped: dict[int, list[Record]] = defaultdict(list)
    for record in sorted(records):
        grouped[record.partition].append(record)
    return dict(grouped)


def commit_sync(consumer: Any, topic: str, offsets: dict[int, int]) -> None:
    """Commit synchronously and check the broker accepted every partition's offset."""
    tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
    result = consumer.commit(offsets=tps, asynchronous=False)
    assert [tp.error for tp in result] == [None] * len(tps)
    stored = consumer.committed([TopicPartition(topic, p) for p in offsets], timeout=10)
    assert {tp.partition: tp.offset for tp in stored} == offsets


def test_new_consumer_resumes_exactly_at_committed_offsets(
    kafka_bootstrap: str, make_topic: MakeTopic, unique_group: str
) -> None:
    topic = make_topic(partitions=3)
    produced = produce_keyed(kafka_bootstrap, topic, 90)
    partitions = by_partition(produced)
    assert sorted(partitions) == [0, 1, 2], "keys should spread over all partitions"
    assert all(len(records) >= 3 for records in partitions.values())

    first = Consumer(consumer_conf(kafka_bootstrap, unique_group))
    try:
        first.subscribe([topic])
        seen = consume(first, len(produced))
        assert sorted(seen) == sorted(produced)
        assert {tp.partition for tp in first.assignment()} == {0, 1, 2}
        # A different, non-trivial cut per partition: a third, a half, all but the last.
        cuts = {
            p: records[[len(records) // 3, len(records) // 2, len(records) - 1][p]].offset
            for p, records in partitions.items()
        }
        commit_sync(first, topic, cuts)
    finally:
        first.close()

    expected = [r for r in produced if r.offset >= cuts[r.partition]]
    assert 0 < len(expected) < len(produced)
    second = Consumer(consumer_conf(kafka_bootstrap, unique_group))
    try:
        second.subscribe([topic])
        resumed = consume(second, len(expected), settle=3.0)
    finally:
        second.close()
    assert len(resumed) == len(set(resumed)), "no message may be delivered twice"
    assert sorted(resumed) == sorted(expected)
    assert {p: rs[0].offset for p, rs in by_partition(resumed).items()} == cuts


def test_restart_keeps_messages_and_committed_offsets(
    kafka_broker: DevKafka, make_topic: MakeTopic, unique_group: str
) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = make_topic(partitions=1)
    produced = produce_keyed(bootstrap, topic, 10)
    consumer = Consumer(consumer_conf(bootstrap, unique_group))
    try:
        consumer.subscribe([topic])
        assert consume(consumer, 10) == produced
        commit_sync(consumer, topic, {0: 4})
    finally:
        consumer.close()

    old_pid = kafka_broker.pid
    assert kafka_broker.restart() == bootstrap, "a restart must keep the address"
    assert kafka_broker.pid not in (None, old_pid), "the broker process must really restart"

    fresh = Consumer(consumer_conf(bootstrap, f"{unique_group}-fresh"))
    try:
        fresh.subscribe([topic])
        assert consume(fresh, 10, settle=1.0) == produced, "log data must survive the restart"
    finally:
        fresh.close()
    resumed = Consumer(consumer_conf(bootstrap, unique_group))
    try:
        resumed.subscribe([topic])
        assert consume(resumed, 6, settle=2.0) == produced[4:], "offsets must survive the restart"
    finally:
        resumed.close()


def test_state_file_lets_another_process_find_the_broker(kafka_broker: DevKafka) -> None:
    seen_from_outside = DevKafka(kafka_broker.data_dir)
    assert seen_from_outside.is_running()
    assert seen_from_outside.bootstrap == kafka_broker.bootstrap
    assert seen_from_outside.pid == kafka_broker.pid
    status = _cli("status", "--dir", str(kafka_broker.data_dir))
    assert status.returncode == 0
    assert status.stdout.strip() == f"running {kafka_broker.bootstrap} pid {kafka_broker.pid}"


def test_cli_status_reports_stopped_for_an_empty_dir(tmp_path: Path) -> None:
    status = _cli("status", "--dir", str(tmp_path / "nothing-here"))
    assert (status.returncode, status.stdout.strip()) == (3, "stopped")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.dev.devkafka", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
