"""The dead-letter topic: refused events, with the reason, written before their offset commits.

A dead letter counts as handled only once the broker confirmed it (acks=all, idempotent
producer); until then its partition's commit stays below it. Whatever goes wrong on the way,
produce() raising (any KafkaException, BufferError, anything) or a delivery report with an
error (unknown topic, too large, no leader, not authorized, timed out), the letter is produced
again after a capped exponential backoff, for as long as it takes: it heals by itself once the
cause is fixed, and no exception reaches the caller or an event-loop callback. Meanwhile
`problem()` says why (for /readyz) and `dlq_write_failures_total{cause}` counts each failure.

Letters take the bounded form of dlq_record.py, cut to the smaller of the producer's
`message.max.bytes` and the topic's `max.message.bytes` (read at start). A letter the broker
still refuses as too large (the topic's limit shrank since) is cut to half its size and retried.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from streamer.config import KafkaConfig
from streamer.dlq_record import MIN_LIMIT_BYTES, Origin, bounded, origin_of, record_size
from streamer.dlq_topic import check_topic
from streamer.logs import RDKAFKA_LOG
from streamer.metrics import Metrics
from streamer.source import StartupError

__all__ = ["DeadLetterWriter", "Done", "Origin", "origin_of"]

log = logging.getLogger(__name__)

RETRY_INITIAL_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
# librdkafka itself keeps a letter for a missing topic or leader up to message.timeout.ms
# (5 minutes) before it reports anything: a letter unconfirmed this long already means trouble
UNCONFIRMED_SECONDS = 5.0
PRODUCER_DEFAULT_LIMIT = 1_000_000  # librdkafka's default message.max.bytes

# librdkafka error codes -> the bounded `cause` label (metrics.DLQ_FAILURE_CAUSES)
_CAUSES = {
    KafkaError._UNKNOWN_TOPIC: "unknown_topic",
    KafkaError.UNKNOWN_TOPIC_OR_PART: "unknown_topic",
    KafkaError._UNKNOWN_PARTITION: "unknown_topic",
    KafkaError.MSG_SIZE_TOO_LARGE: "too_large",
    KafkaError.RECORD_LIST_TOO_LARGE: "too_large",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "authorization",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "authorization",
    KafkaError._AUTHENTICATION: "authorization",
    KafkaError.SASL_AUTHENTICATION_FAILED: "authorization",
    KafkaError._MSG_TIMED_OUT: "timeout",
    KafkaError._TIMED_OUT: "timeout",
    KafkaError.REQUEST_TIMED_OUT: "timeout",
    KafkaError._TRANSPORT: "unavailable",
    KafkaError._ALL_BROKERS_DOWN: "unavailable",
    KafkaError.LEADER_NOT_AVAILABLE: "unavailable",
    KafkaError.NOT_LEADER_FOR_PARTITION: "unavailable",
    KafkaError.NOT_ENOUGH_REPLICAS: "unavailable",
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND: "unavailable",
    KafkaError._QUEUE_FULL: "queue_full",
}

Done = Callable[[], None]


@dataclass(eq=False)
class _Letter:
    """One dead letter, from write() until the broker confirms it."""

    origin: Origin
    reason: str
    detail: str
    done: Done
    limit: int  # the most bytes its record may take
    since: float
    size: int = 0  # of the record last produced
    attempts: int = 0
    failed: bool = False  # an attempt failed (it counts in _failing until confirmed)
    generation: int = 0  # of the producer it was last given to


def producer_settings(config: KafkaConfig) -> dict[str, Any]:
    """The DLQ producer's librdkafka settings: defaults, then kafka.producer, then ours."""
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "linger.ms": 20,
        "compression.type": "lz4",
    }
    settings.update(config.producer)
    # owned by the streamer (config validation refuses them in kafka.producer): a dead letter
    # counts as written only once every in-sync replica has it
    settings.update({"acks": "all", "enable.idempotence": True})
    return settings


class DeadLetterWriter:
    def __init__(
        self,
        config: KafkaConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = producer_settings(config)
        settings["logger"] = RDKAFKA_LOG  # through Python logging, not raw to stderr
        self._config = settings
        self._producer = Producer(settings)
        self._generation = 0
        self._retired: list[Any] = []  # producers replaced after a fatal error, until drained
        self._topic = config.dlq_topic
        self._metrics = metrics
        self._clock = clock
        # librdkafka accepted the value when it built the producer, so it is an integer
        self.limit = int(str(settings.get("message.max.bytes", PRODUCER_DEFAULT_LIMIT)))
        self._unconfirmed: dict[_Letter, None] = {}  # in write order: the first is the oldest
        self._failing = 0  # unconfirmed letters whose last attempt failed
        self._stuck = False  # the oldest letter has waited over UNCONFIRMED_SECONDS
        self._last_error = ""

    async def start(self, timeout: float) -> None:
        """Check that the topic exists and may be written, and read its record limit.

        Raises StartupError (exit 3), like a missing source topic: a DLQ that cannot take a
        letter would hold the first refused event's partition from the start.
        """
        topic_limit = await asyncio.to_thread(check_topic, self._config, self._topic, timeout)
        limit = self.limit if topic_limit is None else min(self.limit, topic_limit)
        if limit < MIN_LIMIT_BYTES:
            raise StartupError(
                f"kafka.dlq_topic: {self._topic} takes records of at most {limit} bytes "
                f"(its max.message.bytes, or message.max.bytes in kafka.producer); a dead "
                f"letter needs at least {MIN_LIMIT_BYTES}"
            )
        if limit < self.limit:
            # librdkafka fills a batch up to its own message.max.bytes, and the broker holds
            # the whole batch to the topic's limit: a producer built with the topic's
            self.limit = self._config["message.max.bytes"] = limit
            self._producer = Producer(self._config)

    @property
    def pending(self) -> int:
        """Letters not yet confirmed by the broker (waiting or being retried)."""
        return len(self._unconfirmed)

    def write(self, origin: Origin, reason: str, detail: str, done: Done) -> None:
        """Queue one dead letter; `done` runs once the broker has it (from poll()).

        Never raises: a failure is retried from the event loop, which must be running.
        """
        letter = _Letter(origin, reason, detail, done, self.limit, self._clock())
        self._unconfirmed[letter] = None
        self._send(letter)

    def problem(self) -> str | None:
        """Why dead letters do not get through (for /readyz), or None while they do."""
        if self._failing:
            return (
                f"{self._failing} dead letter(s) failing to reach {self._topic} "
                f"({self._last_error}); retrying"
            )
        waited = self._oldest_wait()
        if waited > UNCONFIRMED_SECONDS:
            return f"dead letters to {self._topic} unconfirmed for {waited:.0f}s"
        return None

    def poll(self) -> None:
        """Serve delivery callbacks; called from the event loop so callbacks run on it."""
        self._producer.poll(0)
        for old in self._retired:
            old.poll(0)
        self._retired = [old for old in self._retired if len(old)]
        stuck = self._oldest_wait() > UNCONFIRMED_SECONDS
        if stuck and not self._stuck:  # librdkafka is silent meanwhile: say it once
            log.warning(
                "DLQ writes to %s unconfirmed for %.0fs (%d waiting): is the topic there, "
                "with a leader?",
                self._topic, self._oldest_wait(), self.pending,
            )  # fmt: skip
        self._stuck = stuck

    def _oldest_wait(self) -> float:
        oldest = next(iter(self._unconfirmed), None)
        return 0.0 if oldest is None else self._clock() - oldest.since

    def _send(self, letter: _Letter) -> None:
        record = bounded(letter.origin, letter.reason, letter.detail, letter.limit)
        letter.size = record_size(*record)
        letter.generation = self._generation
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        try:
            self._producer.produce(
                self._topic,
                key=record.key,
                value=record.value,
                headers=headers,
                on_delivery=functools.partial(self._delivered, letter),
            )
        except Exception as exc:  # whatever it is, retry: nothing may escape into the caller
            self._failed(letter, exc)

    def _delivered(self, letter: _Letter, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failed(letter, err)
            return
        del self._unconfirmed[letter]
        if letter.failed:
            self._failing -= 1
            if not self._failing:
                log.info("DLQ writes to %s succeed again", self._topic)
        self._metrics.dlq_writes.labels(letter.reason).inc()
        letter.done()

    def _failed(self, letter: _Letter, problem: KafkaError | Exception) -> None:
        cause, self._last_error = describe(problem)
        self._metrics.dlq_failures.labels(cause).inc()
        origin = letter.origin
        if not letter.failed:
            letter.failed = True
            self._failing += 1
            if self._failing == 1:  # one line when failures start, not one per letter and try
                log.warning(
                    "DLQ write to %s failed (%s), from %s[%d]@%d; retrying until it succeeds",
                    self._topic, problem, origin.topic, origin.partition, origin.offset,
                    extra={"topic": origin.topic, "partition": origin.partition,
                           "offset": origin.offset, "reason": cause},
                )  # fmt: skip
        if cause == "too_large":  # the topic's limit shrank since start: cut harder
            letter.limit = max(MIN_LIMIT_BYTES, min(letter.limit, letter.size) // 2)
        if cause == "fatal" and letter.generation == self._generation:
            self._renew_producer()
        delay = backoff(letter.attempts)
        letter.attempts += 1
        asyncio.get_running_loop().call_later(delay, self._send, letter)

    def _renew_producer(self) -> None:
        """A fatal error (e.g. the idempotent producer lost its sequence) leaves the instance
        unusable: a new one takes over. What the old one still holds comes back as purged,
        through poll(), and is retried on the new one."""
        log.error("the DLQ producer hit a fatal error; replacing it")
        old = self._producer
        self._producer = Producer(self._config)
        self._generation += 1
        old.purge()
        self._retired.append(old)


def backoff(attempts: int) -> float:
    """Seconds before the next try: doubling from RETRY_INITIAL_SECONDS up to
    RETRY_MAX_SECONDS, with jitter so that many letters failing together spread out."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_INITIAL_SECONDS * 2 ** min(attempts, 20))
    return random.uniform(ceiling / 2, ceiling)


def describe(problem: KafkaError | BaseException) -> tuple[str, str]:
    """A failure's `cause` label (metrics.DLQ_FAILURE_CAUSES) and its name for /readyz."""
    if isinstance(problem, KafkaException) and problem.args:
        problem = problem.args[0] if isinstance(problem.args[0], KafkaError) else problem
    if isinstance(problem, KafkaError):
        cause = "fatal" if problem.fatal() else _CAUSES.get(problem.code(), "other")
        return cause, str(problem.name())
    if isinstance(problem, BufferError):
        return "queue_full", "local queue full"
    return "other", type(problem).__name__
