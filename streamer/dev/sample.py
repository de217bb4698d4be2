"""Realistic cohort event logs with their expected final state (demo, tests and benchmark).

Cohort sizes are skewed (a few big cohorts, many small ones), users flap in and out, and a
chosen share of events is invalid in each of the ways the DLQ reasons name. The expected state
is the last-write-wins state of the valid events, which is what MoEngage must end up holding.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Producer

# one bad event of each kind the decoder refuses, with the reason it must be dead-lettered for
INVALID_SAMPLES: tuple[tuple[bytes, str], ...] = (
    (b"{not json", "invalid_json"),
    (b'{"action":"enter","cohort_id":"c-x","cohort_name":"X"}', "missing_field"),
    (b'{"action":"enter","cohort_id":"c-x","cohort_name":"X","uid":""}', "invalid_field"),
    (b'{"action":"join","cohort_id":"c-x","cohort_name":"X","uid":"u1"}', "unknown_action"),
    (
        b'{"action":"enter","cohort_id":"c-x","cohort_name":"bad|name","uid":"u1"}',
        "invalid_cohort_name",
    ),
    (b"[1,2,3]", "invalid_json"),
)


@dataclass
class SampleLog:
    """Keyed messages in production order, and what each cohort must contain at the end."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    expected: dict[str, set[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    invalid: int = 0

    @property
    def valid(self) -> int:
        return len(self.messages) - self.invalid


def generate(
    events: int,
    cohorts: int,
    users: int,
    seed: int = 7,
    invalid_every: int = 0,
    exit_share: float = 0.35,
) -> SampleLog:
    """`events` messages over `cohorts` cohorts (Zipf-like sizes) and `users` users."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(cohorts)]
    cohort_ids = [f"cohort-{i:03d}" for i in range(cohorts)]
    log = SampleLog(names={c: f"Cohort {c[-3:]} (demo)" for c in cohort_ids})
    chosen = rng.choices(range(cohorts), weights=weights, k=events)
    now_ms = int(time.time() * 1000)
    for n, cohort_index in enumerate(chosen):
        if invalid_every and n % invalid_every == invalid_every - 1:
            value, _reason = INVALID_SAMPLES[(n // invalid_every) % len(INVALID_SAMPLES)]
            log.messages.append((f"bad-{n}".encode(), value))
            log.invalid += 1
            continue
        cohort_id = cohort_ids[cohort_index]
        uid = f"user-{rng.randrange(users):07d}"
        members = log.expected.setdefault(cohort_id, set())
        # exits only make sense for members; flapping users enter and exit repeatedly
        leave = uid in members and rng.random() < exit_share * 2
        if leave:
            members.discard(uid)
        else:
            members.add(uid)
        event = {
            "action": "exit" if leave else "enter",
            "cohort_id": cohort_id,
            "cohort_name": log.names[cohort_id],
            "uid": uid,
            "ts": now_ms,
        }
        log.messages.append((uid.encode(), orjson.dumps(event)))
    return log


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Write keyed messages (the key picks the partition, so a user's events stay in order)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    for key, value in messages:
        produce_one(producer, topic, key, value)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} sample messages were not delivered to {topic}")


def produce_one(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    """Queue one message, waiting while librdkafka's local queue is full (BufferError) for
    deliveries to make room. (Test and benchmark producers; the DLQ writer has its own rule.)"""
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)
