"""The dead-letter path never stops the pipeline (issue 13, items 2 and 3), on the real broker.

- a DLQ topic that is missing at start stops the start (exit 3, one line);
- a DLQ topic that vanishes later, or shrinks its `max.message.bytes`: the dead letter is
  retried, the partition's commit stays below it, `/readyz` says why, and it heals by itself;
- an oversized record (any size the broker accepts) reaches the DLQ in a bounded form, and the
  events after it reach the API.

Each test uses a one-partition source topic, so "the commit stays below the bad event" is one
offset to read.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from streamer.dev.devkafka import create_topic
from tests.fixtures.kafka import MakeTopic
from tests.fixtures.observe import http_get, metric, wait_for
from tests.fixtures.startup import CREDENTIALS, assert_one_clear_line, run_streamer, streamer_config
from tests.fixtures.streamer import DeadLetter, StreamerRig

FAILURES = "cohort_streamer_dlq_write_failures_total"
# librdkafka's producer default (message.max.bytes), below the broker's 1048588 default
PRODUCER_DEFAULT_LIMIT = 1_000_000
# the largest per-record framing around key, value and headers in a one-record batch:
# batch header (61) + record fields as varints at their widest (36) + 10 per header
BATCH_AND_RECORD_OVERHEAD = 61 + 36


@pytest.fixture
def rig1(rig: StreamerRig, make_topic: MakeTopic) -> StreamerRig:
    """The rig with a one-partition source topic that takes records up to 2 MB."""
    rig.topic = make_topic(partitions=1, prefix="events", config={"max.message.bytes": "2000000"})
    return rig


def _event(cohort: str, uid: str) -> bytes:
    return orjson.dumps({"action": "enter", "cohort_id": cohort, "cohort_name": cohort, "uid": uid})


def _good(cohort: str, count: int) -> list[tuple[bytes | None, bytes | None]]:
    return [(f"{cohort}-u{i}".encode(), _event(cohort, f"{cohort}-u{i}")) for i in range(count)]


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """In order, one by one, uncompressed (so the broker stores each at its full size)."""
    largest = max(len(k or b"") + len(v or b"") for k, v in records)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "none",
            "message.max.bytes": min(2_147_483_647, largest + 100_000),
        }
    )
    for key, value in records:
        producer.produce(topic, key=key, value=value)
        assert producer.flush(60) == 0


def _committed(rig: StreamerRig) -> int:
    consumer = Consumer({"bootstrap.servers": rig.bootstrap, "group.id": rig.group})
    try:
        [tp] = consumer.committed([TopicPartition(rig.topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def _ready(port: int | None) -> tuple[int, str]:
    assert port is not None
    status, body = http_get(port, "/readyz")
    return status, str(orjson.loads(body)["reason"]) if body else ""


def _by_offset(letters: list[DeadLetter]) -> dict[int, DeadLetter]:
    return {int(letter.headers["offset"]): letter for letter in letters}


def _set_topic_limit(bootstrap: str, topic: str, limit: int) -> None:
    entry = ConfigEntry(
        "max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=30)
    wait_for(lambda: topic not in admin.list_topics(timeout=5).topics, 30, f"{topic} to be deleted")


# --- at start -------------------------------------------------------------------------------


def test_a_missing_dlq_topic_at_start_gives_one_line_and_exit_3(
    tmp_path: Any, kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    """Like a missing source topic: refused before consuming anything, naming the key."""
    source = make_topic(partitions=1, prefix="events")
    config = streamer_config(
        kafka_bootstrap,
        kafka={"topics": [source], "dlq_topic": "no-such-dlq-r13", "startup_timeout_seconds": 10},
    )
    result = run_streamer(tmp_path, config, CREDENTIALS)
    assert_one_clear_line(result, 3, ("kafka.dlq_topic", "no-such-dlq-r13", "does not exist"))


# --- at run time: the DLQ topic vanishes, or shrinks ----------------------------------------


@pytest.mark.parametrize(
    "producer",
    [
        # librdkafka's defaults: nothing is reported for minutes, the letter just waits
        {},
        # failures reported within a second or two: a delivery report (unknown topic, timed
        # out), or produce() raising _UNKNOWN_TOPIC, depending on librdkafka's metadata state
        {"message.timeout.ms": 1500, "topic.metadata.propagation.max.ms": 300},
    ],
    ids=["unreported", "reported"],
)
def test_a_vanished_dlq_topic_holds_the_commit_and_heals_when_it_returns(
    rig1: StreamerRig, producer: dict[str, Any]
) -> None:
    """The DLQ topic is deleted under a running streamer, then a bad event arrives between
    good ones. The good events after it still reach the API, the commit stays at the bad
    event, /readyz names the DLQ; once the topic is created again the letter lands, the
    commit passes it and /readyz recovers, without a restart.
    """
    rig = rig1
    proc = rig.start(kafka={"producer": producer})
    port = proc.metrics_port
    wait_for(lambda: _ready(port)[0] == 200, 30, "the streamer to be ready")
    _delete_topic(rig.bootstrap, rig.dlq_topic)

    before, after = _good("c-before", 5), _good("c-after", 5)
    _produce(rig.bootstrap, rig.topic, before)
    bad_offset = len(before)
    wait_for(lambda: _committed(rig) == bad_offset, 30, "the events before the bad one")
    _produce(rig.bootstrap, rig.topic, [(b"bad", b"{not json"), *after])
    wait_for(lambda: len(rig.emulator.members("c-after")) == 5, 30, "the events after the bad one")
    wait_for(lambda: _ready(port)[0] == 503, 30, "/readyz to report the failing DLQ")
    _status, reason = _ready(port)
    assert rig.dlq_topic in reason and "dead letter" in reason, reason
    time.sleep(1.0)  # several commit intervals
    assert _committed(rig) == bad_offset
    assert proc.alive(), proc.log_tail()
    if producer:
        assert metric(port, FAILURES) > 0

    create_topic(rig.bootstrap, rig.dlq_topic)
    [letter] = rig.dead_letters(1, timeout=60)
    assert (letter.key, letter.value) == (b"bad", b"{not json")
    assert letter.headers["reason"] == "invalid_json"
    rig.wait_caught_up(timeout=60)
    wait_for(lambda: _ready(port)[0] == 200, 30, "/readyz to recover")
    assert proc.terminate() == 0


def test_a_dlq_topic_whose_limit_shrinks_at_runtime_still_takes_the_letter(
    rig1: StreamerRig,
) -> None:
    """The limit read at start goes stale: the broker refuses the letter as too large, and
    it is cut further until the topic takes it; the events after it are not held up."""
    rig = rig1
    proc = rig.start()
    wait_for(lambda: _ready(proc.metrics_port)[0] == 200, 30, "the streamer to be ready")
    _set_topic_limit(rig.bootstrap, rig.dlq_topic, 100_000)

    big = _incompressible(500_000)
    _produce(rig.bootstrap, rig.topic, [(b"big", big), *_good("c-after", 5)])
    [letter] = rig.dead_letters(1, timeout=60)
    rig.wait_caught_up(timeout=60)
    assert len(rig.emulator.members("c-after")) == 5
    assert letter.headers["reason"] == "event_too_large"
    assert letter.headers["truncated_value_from_bytes"] == str(len(big))
    assert letter.key == b"big" and letter.value is not None
    assert big.startswith(letter.value) and len(letter.value) < 100_000
    assert metric(proc.metrics_port, FAILURES, cause="too_large") >= 1
    assert proc.terminate() == 0


# --- oversized records ----------------------------------------------------------------------


def _incompressible(size: int) -> bytes:
    """Random bytes: the DLQ producer compresses, and the broker checks the compressed size."""
    return random.Random(size).randbytes(size)


def _oversized_cases(limit: int) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of records that are refused and whose dead letter may not fit `limit`."""
    return [
        (_incompressible(150_000), _incompressible(880_000)),  # the issue's: 1.03 MB, both big
        (_incompressible(limit + 40_000), b"{not json"),  # a big key alone (an invalid event)
        (b"big-value", _incompressible(limit + 40_000)),  # a big value alone
        (b"below", _incompressible(limit - 3_000)),  # fits with its headers: kept whole
        (b"above", _incompressible(limit - BATCH_AND_RECORD_OVERHEAD)),  # over by its headers
        (b"tombstone", None),  # a null value stays null
    ]


@pytest.mark.parametrize("dlq_limit", [None, 200_000], ids=["producer-limit", "topic-limit"])
def test_oversized_records_are_dead_lettered_in_bounded_form(
    rig1: StreamerRig, make_topic: MakeTopic, dlq_limit: int | None
) -> None:
    """Records up to the source topic's limit, whose dead letters exceed the DLQ producer's
    `message.max.bytes` (1 MB) or a DLQ topic's smaller `max.message.bytes`: each lands, cut
    to fit, with headers naming what was cut; the valid events after them arrive."""
    rig = rig1
    if dlq_limit is not None:
        rig.dlq_topic = make_topic(prefix="dlq", config={"max.message.bytes": str(dlq_limit)})
    limit = dlq_limit or PRODUCER_DEFAULT_LIMIT
    cases = _oversized_cases(limit)
    before, after = _good("c-before", 3), _good("c-after", 3)
    _produce(rig.bootstrap, rig.topic, [*before, *cases, *after])

    proc = rig.start()
    letters = _by_offset(rig.dead_letters(len(cases), timeout=60))
    rig.wait_caught_up(timeout=60)
    assert len(rig.emulator.members("c-after")) == 3, proc.log_tail()
    assert sorted(letters) == list(range(len(before), len(before) + len(cases)))
    for offset, (key, value) in enumerate(cases, start=len(before)):
        _assert_bounded(letters[offset], key, value, limit)
    assert letters[len(before) + 3].key == b"below"  # the one that fits is not cut
    assert letters[len(before) + 3].value == cases[3][1]
    # the limit was read right: the broker refused nothing
    assert metric(proc.metrics_port, FAILURES) == 0
    assert proc.alive(), proc.log_tail()
    assert proc.terminate() == 0


def _assert_bounded(letter: DeadLetter, key: bytes | None, value: bytes | None, limit: int) -> None:
    headers = letter.headers
    size = len(letter.key or b"") + len(letter.value or b"")
    size += sum(len(name) + len(text.encode()) + 10 for name, text in headers.items())
    assert size + BATCH_AND_RECORD_OVERHEAD <= limit, (size, headers)
    if any(name.startswith("truncated_") for name in headers):  # cut no more than needed
        assert size + BATCH_AND_RECORD_OVERHEAD > limit - 1_000, (size, headers)
    for part, original, got in (("key", key, letter.key), ("value", value, letter.value)):
        if original is None:
            assert got is None, f"a null {part} became {got!r:.40}"
            continue
        assert got is not None and original.startswith(got), f"{part} is not a prefix"
        cut = headers.get(f"truncated_{part}_from_bytes")
        if len(got) < len(original):
            assert cut == str(len(original)), headers
        else:
            assert cut is None, headers


def test_a_record_at_the_brokers_request_limit_is_consumed(
    rig1: StreamerRig, make_topic: MakeTopic
) -> None:
    """A 100.5 MB record (the broker takes requests up to 100 MiB when a topic allows it) is
    beyond librdkafka's default receive.message.max.bytes (100 MB): the consumer must still
    fetch it, dead-letter it in bounded form and go on to the events after it."""
    rig = rig1
    size = 100_500_000
    rig.topic = make_topic(
        partitions=1, prefix="huge", config={"max.message.bytes": str(size + 100_000)}
    )
    _produce(rig.bootstrap, rig.topic, [(b"huge", b"h" * size), *_good("c-after", 3)])

    proc = rig.start()
    [letter] = rig.dead_letters(1, timeout=60)
    rig.wait_caught_up(timeout=60)
    assert len(rig.emulator.members("c-after")) == 3, proc.log_tail()
    assert letter.headers["truncated_value_from_bytes"] == str(size)
    assert proc.terminate() == 0
