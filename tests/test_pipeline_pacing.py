"""streamer/pipeline.py with the paced limiter: a token seals one cohort, so the others keep
coalescing until a token is there for them (not sealed all at once to wait in its queue)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from confluent_kafka import Message

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition
from streamer.pipeline import Pipeline
from streamer.ratelimit import RateLimiter, burst_of
from streamer.seal import Shipment
from streamer.send import Settle
from tests.test_ratelimit import FakeClock

P0: TopicPartition = ("events", 0)
COHORTS = 10
SETTLE_SECONDS = 0.5  # real time for the dispatcher (50 ms ticks) and a waiting acquire


class HeldSender:
    """Takes a token per request like the real one, then never hears back."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.sealed: list[str] = []

    async def deliver(self, shipment: Shipment, settle: Settle) -> None:
        self.sealed.append(shipment.cohort_id)
        for _ in shipment.parcels:
            await self.limiter.acquire()
        await asyncio.Event().wait()


def event(offset: int, cohort: str, action: str) -> Message:
    value = orjson.dumps({"action": action, "cohort_id": cohort, "uid": f"u{offset}", "ts": 1})
    return Message(topic="events", partition=0, offset=offset, value=value)


@pytest.mark.parametrize(("actions", "sealed"), [(("enter",), 5), (("enter", "exit"), 3)])
async def test_each_token_seals_one_cohort(actions: tuple[str, ...], sealed: int) -> None:
    """A burst of 5 tokens and a frozen clock: one action per cohort seals 5 cohorts; both
    actions take 2 tokens a cohort, so the third cohort's second request waits its token."""
    clock = FakeClock()
    limiter = RateLimiter(300, 60.0, clock)
    assert burst_of(300) == 5
    sender = HeldSender(limiter)
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "dlq"},
            "moengage": {"base_url": "http://unused"},
            "batching": {"linger_ms": 10},
        }
    )
    p = Pipeline(settings, sender, limiter, None, Metrics())  # type: ignore[arg-type]
    await p.assigned([P0])
    messages = [event(i, f"c{i // len(actions)}", actions[i % len(actions)])
                for i in range(COHORTS * len(actions))]  # fmt: skip
    p.ingest(messages)
    dispatcher = asyncio.create_task(p.dispatch_forever())
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        assert sender.sealed == [f"c{i}" for i in range(sealed)]  # oldest first
        assert p.cohorts.buffered == COHORTS - sealed
        clock.advance((len(actions) + 0.01) / limiter.pace_per_second())  # one more cohort
        await asyncio.sleep(SETTLE_SECONDS)
        assert len(sender.sealed) == sealed + 1
    finally:
        dispatcher.cancel()
        await p.stop()
