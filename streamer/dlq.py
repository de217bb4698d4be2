"""The dead-letter topic: refused events, with the reason, written before their offset commits.

The original key and value go out unchanged, with headers `reason` (one of decode.REASONS),
`detail`, and the source `topic`, `partition`, `offset`. The producer is idempotent with
acks=all; the event counts as handled only once the broker confirmed the write, and a refused
write is produced again after a pause, so a DLQ outage holds the commit back instead of losing data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, Producer

from streamer.batch import SourceMessage
from streamer.config import KafkaConfig
from streamer.metrics import Metrics

log = logging.getLogger(__name__)
RDKAFKA_LOG = logging.getLogger("streamer.librdkafka")  # the same logger source.py uses

RETRY_SECONDS = 1.0
# Kafka's default max.message.bytes is ~1 MB; a value above this is cut and marked in a header
MAX_DLQ_VALUE_BYTES = 900_000

Done = Callable[[], None]


class Origin(NamedTuple):
    """Where a dead letter came from, and its original key and value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def origin_of(msg: SourceMessage) -> Origin:
    return Origin(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())


Headers = list[tuple[str, str | bytes | None]]


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
    def __init__(self, config: KafkaConfig, metrics: Metrics) -> None:
        settings = producer_settings(config)
        settings["logger"] = RDKAFKA_LOG  # through Python logging, not raw to stderr
        self._producer = Producer(settings)
        self._topic = config.dlq_topic
        self._metrics = metrics
        self._pending = 0

    @property
    def pending(self) -> int:
        """Writes not yet confirmed by the broker."""
        return self._pending

    def write(self, origin: Origin, reason: str, detail: str, done: Done) -> None:
        """Queue one dead letter; `done` runs once the broker has it (from poll())."""
        value = origin.value or b""
        headers: Headers = [
            ("reason", reason.encode()),
            ("detail", detail.encode("utf-8", "replace")[:1000]),
            ("topic", origin.topic.encode()),
            ("partition", str(origin.partition).encode()),
            ("offset", str(origin.offset).encode()),
        ]
        if len(value) > MAX_DLQ_VALUE_BYTES:
            headers.append(("truncated_from_bytes", str(len(value)).encode()))
            value = value[:MAX_DLQ_VALUE_BYTES]
        self._pending += 1
        self._produce(origin.key, value, headers, reason, done)

    def _produce(
        self,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        reason: str,
        done: Done,
    ) -> None:
        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is None:
                self._pending -= 1
                self._metrics.dlq_writes.labels(reason).inc()
                done()
                return
            self._metrics.dlq_failures.inc()
            log.warning("DLQ write to %s failed (%s); retrying", self._topic, err)
            asyncio.get_running_loop().call_later(
                RETRY_SECONDS, self._produce, key, value, headers, reason, done
            )

        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                return
            except BufferError:  # local queue full: serve callbacks to make room
                self._producer.poll(0.05)

    def poll(self) -> None:
        """Serve delivery callbacks; called from the event loop so callbacks run on it."""
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait for outstanding writes; returns how many are still unconfirmed."""
        remaining: int = self._producer.flush(timeout)
        return remaining
