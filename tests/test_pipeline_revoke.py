"""streamer/pipeline.py: a revoke whose flush deadline passes stops the deliveries it releases.

A delivery still retrying after its partition moved on could land after the new owner's request
for the same uid and undo a later change; so it is cancelled, its events of the released
partitions are dropped (the new owner redelivers them) and its other events go back to the
buffer, unsettled.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition
from streamer.pipeline import Pipeline
from streamer.seal import Shipment
from streamer.send import Settle

TOPIC = "events"
P0: TopicPartition = (TOPIC, 0)
P1: TopicPartition = (TOPIC, 1)


class StuckSender:
    """An API that never accepts: a delivery retries until it is cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = 0

    async def deliver(self, shipment: Shipment, settle: Settle) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class OpenLimiter:
    def has_capacity(self) -> bool:
        return True


def event(partition: int, offset: int, uid: str, action: str = "enter") -> Message:
    value = orjson.dumps(
        {"action": action, "cohort_id": "c", "cohort_name": "Cohort C", "cohort_description": "d",
         "uid": uid, "ts": 1_700_000_000_000}
    )  # fmt: skip
    return Message(topic=TOPIC, partition=partition, offset=offset, key=uid.encode(), value=value)


def pipeline(sender: Any) -> Pipeline:
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "dlq"},
            "moengage": {"base_url": "http://unused"},
            "batching": {"linger_ms": 10},
            "deadlines": {"revoke_flush_seconds": 0.3},
        }
    )
    return Pipeline(settings, sender, OpenLimiter(), None, Metrics())  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_revoke_past_its_deadline_cancels_the_delivery_and_requeues_what_stays() -> None:
    sender = StuckSender()
    p = pipeline(sender)
    await p.assigned([P0, P1])
    p.ingest([event(0, 0, "a"), event(0, 1, "b")])
    p.ingest([event(1, 0, "x"), event(1, 1, "y", "exit")])
    dispatcher = asyncio.create_task(p.dispatch_forever())
    try:
        await asyncio.wait_for(sender.started.wait(), 5)  # the cohort's delivery is in flight
        points = await p.revoking([P0])
        assert sender.cancelled == 1
        assert not p.sending
        cohort = p.cohorts.by_id["c"]
        assert cohort.open is not None and not cohort.busy
        assert {uid: e.add for uid, e in cohort.open.entries.items()} == {"x": True, "y": False}
        assert (cohort.open.name, cohort.open.description) == ("Cohort C", "d")  # not the id
        assert p.tracker.pending_in([P1]) == 2  # back in the buffer, not settled
        assert points.get(P0, 0) == 0  # nothing of P0 was applied: the new owner starts at 0
        assert p.tracker.assigned() == [P1]
        assert p.buffered_events == 2
    finally:
        dispatcher.cancel()
        await p.stop()


@pytest.mark.asyncio
async def test_a_requeued_event_yields_to_a_later_one_of_the_same_uid() -> None:
    sender = StuckSender()
    p = pipeline(sender)
    await p.assigned([P0, P1])
    p.ingest([event(0, 0, "a"), event(1, 0, "x")])
    dispatcher = asyncio.create_task(p.dispatch_forever())
    try:
        await asyncio.wait_for(sender.started.wait(), 5)
        p.ingest([event(1, 1, "x", "exit")])  # arrives while the add of x is in flight
        await p.revoking([P0])
        cohort = p.cohorts.by_id["c"]
        assert cohort.open is not None
        held = cohort.open.entries["x"]
        assert (held.add, held.offset) == (False, 1)  # the later exit wins over the requeued enter
        assert p.tracker.pending_in([P1]) == 1  # the requeued enter was settled by its winner
        assert p.buffered_events == 1
    finally:
        dispatcher.cancel()
        await p.stop()
