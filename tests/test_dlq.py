"""The dead-letter writer retries every failure until the broker confirms (issue 13, item 2).

A scripted stand-in for confluent_kafka.Producer raises from produce() or reports delivery
errors of every kind librdkafka has; each letter must still be confirmed exactly once, with
the failures counted by cause, /readyz's reason set while they last, and nothing escaping into
the caller or the event loop. The start-up check runs against a scripted AdminClient (the
test broker has no authorizer); tests/test_resilience_dlq.py covers the rest on the broker.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AclOperation
from prometheus_client import CollectorRegistry

from streamer import dlq, dlq_topic
from streamer.config import KafkaConfig
from streamer.dlq import DeadLetterWriter, Origin
from streamer.dlq_record import MIN_LIMIT_BYTES, record_size
from streamer.metrics import DLQ_FAILURE_CAUSES, Metrics
from streamer.source import StartupError

# a scripted outcome of one produce(): raise this, report this error, or (None) confirm
Outcome = BaseException | KafkaError | None


class FakeProducer:
    """produce() takes the next outcome of the shared script; poll() reports deliveries."""

    def __init__(self, kafka: FakeKafka, config: dict[str, Any]) -> None:
        self.kafka = kafka
        self.config = config
        self.waiting: list[tuple[Any, KafkaError | None]] = []
        self.purged = False

    def produce(self, topic: str, **record: Any) -> None:
        outcome = self.kafka.script.pop(0) if self.kafka.script else None
        self.kafka.produced.append(record)
        if isinstance(outcome, BaseException):
            raise outcome
        self.waiting.append((record["on_delivery"], outcome))

    def poll(self, _timeout: float = 0) -> int:
        reports, self.waiting = self.waiting, []
        for on_delivery, err in reports:
            on_delivery(err, None)
        return len(reports)

    def purge(self) -> None:
        self.purged = True
        self.waiting = [(cb, KafkaError(KafkaError._PURGE_QUEUE)) for cb, _err in self.waiting]

    def __len__(self) -> int:
        return len(self.waiting)


class FakeKafka:
    def __init__(self) -> None:
        self.script: list[Outcome] = []
        self.produced: list[dict[str, Any]] = []
        self.producers: list[FakeProducer] = []

    def producer(self, config: dict[str, Any]) -> FakeProducer:
        made = FakeProducer(self, config)
        self.producers.append(made)
        return made


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKafka]:
    fake = FakeKafka()
    monkeypatch.setattr(dlq, "Producer", fake.producer)
    monkeypatch.setattr(dlq, "RETRY_INITIAL_SECONDS", 0.002)
    monkeypatch.setattr(dlq, "RETRY_MAX_SECONDS", 0.01)
    yield fake


@pytest.fixture
async def loop_errors() -> list[dict[str, Any]]:
    """Whatever reaches the event loop's exception handler (an escaped callback error)."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    return errors


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _writer(
    producer: dict[str, Any] | None = None, clock: Any = None
) -> tuple[DeadLetterWriter, Metrics]:
    metrics = Metrics(CollectorRegistry())
    extra = {"clock": clock} if clock is not None else {}
    config = KafkaConfig(bootstrap_servers="unused:9092", dlq_topic="dlq", producer=producer or {})
    return DeadLetterWriter(config, metrics, **extra), metrics


def _origin(offset: int = 7, key: bytes | None = b"k", value: bytes | None = b"{bad") -> Origin:
    return Origin("events", 2, offset, key, value)


def _failures(metrics: Metrics) -> dict[str, float]:
    counts = {c: metrics.dlq_failures.labels(c)._value.get() for c in DLQ_FAILURE_CAUSES}
    return {cause: n for cause, n in counts.items() if n}


async def _until_confirmed(writer: DeadLetterWriter, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.005)):
        writer.poll()
        if not writer.pending:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{writer.pending} letter(s) still unconfirmed: {writer.problem()}")


def _raise(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, **flags))


# every kind of failure: raised by produce(), or reported to the delivery callback
FAILURES: list[tuple[str, Outcome, str]] = [
    ("raise-unknown-topic", _raise(KafkaError._UNKNOWN_TOPIC), "unknown_topic"),
    ("raise-too-large", _raise(KafkaError.MSG_SIZE_TOO_LARGE), "too_large"),
    ("raise-unknown-partition", _raise(KafkaError._UNKNOWN_PARTITION), "unknown_topic"),
    ("raise-invalid-arg", _raise(KafkaError._INVALID_ARG), "other"),
    ("raise-queue-full", BufferError("Local: Queue full"), "queue_full"),
    ("raise-anything", RuntimeError("surprise"), "other"),
    ("report-unknown-topic", KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), "unknown_topic"),
    ("report-too-large", KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), "too_large"),
    ("report-record-list", KafkaError(KafkaError.RECORD_LIST_TOO_LARGE), "too_large"),
    ("report-authz", KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "authorization"),
    ("report-timed-out", KafkaError(KafkaError._MSG_TIMED_OUT), "timeout"),
    ("report-brokers-down", KafkaError(KafkaError._ALL_BROKERS_DOWN), "unavailable"),
    ("report-no-leader", KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION), "unavailable"),
    ("report-unexpected", KafkaError(KafkaError.INVALID_MSG), "other"),
]


@pytest.mark.parametrize(
    ("failure", "cause"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
async def test_any_failure_is_retried_until_the_broker_confirms(
    kafka: FakeKafka, loop_errors: list[dict[str, Any]], failure: Outcome, cause: str
) -> None:
    kafka.script = [failure, failure, failure]
    writer, metrics = _writer()
    confirmed: list[int] = []

    writer.write(_origin(), "invalid_json", "not JSON", lambda: confirmed.append(1))
    await _until_confirmed(writer)

    assert confirmed == [1]
    assert len(kafka.produced) == 4
    assert _failures(metrics) == {cause: 3}
    assert metrics.dlq_writes.labels("invalid_json")._value.get() == 1
    assert writer.problem() is None
    assert not loop_errors


async def test_many_letters_failing_in_turn_are_each_confirmed_once(
    kafka: FakeKafka, loop_errors: list[dict[str, Any]]
) -> None:
    kinds = [f[1] for f in FAILURES]
    kafka.script = kinds * 3  # the letters meet every kind, in changing order
    writer, metrics = _writer()
    confirmed: list[int] = []

    for offset in range(10):
        writer.write(_origin(offset), "invalid_json", "x", lambda o=offset: confirmed.append(o))
    await _until_confirmed(writer)

    assert sorted(confirmed) == list(range(10))
    assert sum(_failures(metrics).values()) == len(kinds) * 3
    assert writer.problem() is None
    assert not loop_errors


async def test_readyz_reason_names_the_failure_while_letters_fail(kafka: FakeKafka) -> None:
    kafka.script = [_raise(KafkaError._UNKNOWN_TOPIC)] * 1000
    writer, _metrics = _writer()

    writer.write(_origin(), "invalid_json", "x", lambda: None)
    for _ in range(5):
        await asyncio.sleep(0.01)
        writer.poll()

    problem = writer.problem()
    assert problem is not None and "dlq" in problem and "_UNKNOWN_TOPIC" in problem, problem
    assert writer.pending == 1
    kafka.script.clear()  # the topic is back
    await _until_confirmed(writer)
    assert writer.problem() is None


async def test_readyz_reason_when_a_letter_waits_unconfirmed(
    kafka: FakeKafka, caplog: pytest.LogCaptureFixture
) -> None:
    """librdkafka reports nothing for minutes about a deleted topic: the age tells."""
    clock = Clock()
    writer, _metrics = _writer(clock=clock)
    [producer] = kafka.producers

    writer.write(_origin(), "invalid_json", "x", lambda: None)
    waiting = producer.waiting
    producer.waiting = []  # in librdkafka's hands, no report yet
    clock.now += dlq.UNCONFIRMED_SECONDS - 0.5
    writer.poll()
    assert writer.problem() is None
    clock.now += 1.5
    writer.poll()
    writer.poll()
    problem = writer.problem()
    assert problem is not None and "unconfirmed for 6s" in problem and "dlq" in problem
    assert [r.getMessage() for r in caplog.records if "unconfirmed" in r.getMessage()] == [
        "DLQ writes to dlq unconfirmed for 6s (1 waiting): is the topic there, with a leader?"
    ]
    producer.waiting = waiting  # the report comes
    writer.poll()
    assert writer.pending == 0 and writer.problem() is None


async def test_a_letter_refused_as_too_large_is_cut_further(kafka: FakeKafka) -> None:
    """The topic's limit shrank after start: each refusal halves what the letter may take."""
    kafka.script = [KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)] * 3
    writer, _metrics = _writer()
    value = bytes(range(256)) * 400  # 102,400 bytes, under the 1 MB read at start

    writer.write(_origin(value=value), "event_too_large", "big", lambda: None)
    await _until_confirmed(writer)

    sizes = [record_size(r["key"], r["value"], r["headers"]) for r in kafka.produced]
    assert len(sizes) == 4 and sizes[0] > len(value)
    for before, after in itertools.pairwise(sizes):
        assert after <= before // 2
    last = kafka.produced[-1]
    assert value.startswith(last["value"])
    assert ("truncated_value_from_bytes", str(len(value)).encode()) in last["headers"]


FATAL = KafkaError(KafkaError._FATAL, "sequence desynchronised", fatal=True)


async def test_a_fatal_error_replaces_the_producer_and_its_letters_move_over(
    kafka: FakeKafka, loop_errors: list[dict[str, Any]]
) -> None:
    """The third produce() raises a fatal error while two letters wait in the producer: a new
    producer takes over, the old one is purged, and all three are confirmed by the new one."""
    kafka.script = [None, None, KafkaException(FATAL)]
    writer, metrics = _writer()
    confirmed: list[int] = []

    for offset in range(3):
        writer.write(_origin(offset), "invalid_json", "x", lambda o=offset: confirmed.append(o))
    await _until_confirmed(writer)

    assert sorted(confirmed) == [0, 1, 2]
    assert len(kafka.producers) == 2 and kafka.producers[0].purged
    assert _failures(metrics) == {"fatal": 1, "other": 2}  # the two purged letters
    assert not loop_errors


async def test_fatal_reports_from_one_producer_replace_it_once(
    kafka: FakeKafka, loop_errors: list[dict[str, Any]]
) -> None:
    kafka.script = [FATAL, FATAL]
    writer, metrics = _writer()
    confirmed: list[int] = []

    for offset in range(2):
        writer.write(_origin(offset), "invalid_json", "x", lambda o=offset: confirmed.append(o))
    await _until_confirmed(writer)

    assert sorted(confirmed) == [0, 1]
    assert len(kafka.producers) == 2
    assert _failures(metrics) == {"fatal": 2}
    assert not loop_errors


async def test_the_producers_message_max_bytes_is_the_limit(kafka: FakeKafka) -> None:
    writer, _metrics = _writer(producer={"message.max.bytes": "20000"})
    value = bytes(range(256)) * 200  # 51,200 bytes

    writer.write(_origin(value=value), "event_too_large", "big", lambda: None)

    [record] = kafka.produced
    assert writer.limit == 20_000
    assert record_size(record["key"], record["value"], record["headers"]) <= 20_000
    assert value.startswith(record["value"]) and len(record["value"]) > 19_000


async def test_a_tombstone_stays_null(kafka: FakeKafka) -> None:
    writer, _metrics = _writer()
    writer.write(_origin(key=None, value=None), "invalid_json", "empty", lambda: None)
    [record] = kafka.produced
    assert record["key"] is None and record["value"] is None


# --- the start-up check of the topic ----------------------------------------------------------


class FakeAdmin:
    """describe_topics / describe_configs answering what the test says."""

    def __init__(self, topic: Any, limit: Any) -> None:
        self._topic, self._limit = topic, limit

    def describe_topics(self, topics: Any, **_kw: Any) -> dict[str, Future[Any]]:
        return {topics.topic_names[0]: _future(self._topic)}

    def describe_configs(self, resources: list[Any], **_kw: Any) -> dict[Any, Future[Any]]:
        entry = SimpleNamespace(value=str(self._limit))
        answer = (
            self._limit if isinstance(self._limit, BaseException) else {"max.message.bytes": entry}
        )
        return {resources[0]: _future(answer)}


def _future(answer: Any) -> Future[Any]:
    future: Future[Any] = Future()
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)
    return future


def _admin(monkeypatch: pytest.MonkeyPatch, topic: Any, limit: Any = 1_048_588) -> None:
    monkeypatch.setattr(dlq_topic, "AdminClient", lambda _config: FakeAdmin(topic, limit))


def _described(*ops: AclOperation) -> SimpleNamespace:
    return SimpleNamespace(authorized_operations=list(ops))


@pytest.mark.parametrize(
    ("topic", "words"),
    [
        (_raise(KafkaError.UNKNOWN_TOPIC_OR_PART), "does not exist on the cluster"),
        (_raise(KafkaError.TOPIC_AUTHORIZATION_FAILED), "cannot use dlq"),
        (_described(AclOperation.READ, AclOperation.DESCRIBE), "may not write to dlq"),
        (_described(), "may not write to dlq"),
    ],
    ids=["missing", "not-authorized", "read-only", "no-operations"],
)
async def test_a_missing_or_unwritable_topic_stops_the_start(
    kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch, topic: Any, words: str
) -> None:
    _admin(monkeypatch, topic)
    writer, _metrics = _writer()
    with pytest.raises(StartupError) as raised:
        await writer.start(5)
    assert str(raised.value).startswith("kafka.dlq_topic: ") and words in str(raised.value)


@pytest.mark.parametrize(
    ("producer", "topic_limit", "limit"),
    [
        ({}, 1_048_588, 1_000_000),  # librdkafka's default binds
        ({}, 200_000, 200_000),  # a topic smaller than the producer's
        ({"message.max.bytes": 5_000_000}, 3_000_000, 3_000_000),
        ({"message.max.bytes": "150000"}, 3_000_000, 150_000),
        ({}, _raise(KafkaError.TOPIC_AUTHORIZATION_FAILED), 1_000_000),  # unreadable config
    ],
)
async def test_the_limit_is_the_smaller_of_producer_and_topic(
    kafka: FakeKafka,
    monkeypatch: pytest.MonkeyPatch,
    producer: dict[str, Any],
    topic_limit: Any,
    limit: int,
) -> None:
    _admin(monkeypatch, _described(AclOperation.WRITE), topic_limit)
    writer, _metrics = _writer(producer=producer)
    await writer.start(5)
    assert writer.limit == limit
    # librdkafka batches up to its message.max.bytes; the broker holds a batch to the topic's
    in_use = kafka.producers[-1].config.get("message.max.bytes", dlq.PRODUCER_DEFAULT_LIMIT)
    assert int(in_use) == limit


async def test_a_topic_too_small_for_any_letter_stops_the_start(
    kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    _admin(monkeypatch, _described(AclOperation.ALL), MIN_LIMIT_BYTES - 1)
    writer, _metrics = _writer()
    with pytest.raises(StartupError, match=r"kafka\.dlq_topic: dlq takes records of at most"):
        await writer.start(5)
