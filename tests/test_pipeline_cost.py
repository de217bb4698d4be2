"""streamer/pipeline.py: cost follows the cohorts with work, not every cohort ever seen (issue 13,
item 5).

One event per distinct cohort, drained by every path that sends (linger, full bodies while
catching up, shutdown flush, revoke flush): afterwards the pipeline tracks no cohort, every event
is settled exactly once, and the dispatcher examined a bounded number of cohorts per pick (before,
each pick walked every cohort ever seen: draining N cohorts cost N^2 / 2 due() calls).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from streamer import batch
from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition
from streamer.pipeline import Pipeline
from streamer.seal import Shipment
from streamer.send import Settle

TOPIC = "events"
PARTITIONS: list[TopicPartition] = [(TOPIC, n) for n in range(3)]
# linger and max_hold long enough that only the path under test makes a cohort due
FOREVER_MS = 600_000


class AcceptingSender:
    """An API that accepts every body at once; records (cohort, action, uids) per body."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, list[str]]] = []

    async def deliver(self, shipment: Shipment, settle: Settle) -> None:
        for parcel in shipment.parcels[shipment.done :]:
            await asyncio.sleep(0)  # a request takes at least one turn of the loop
            action = orjson.loads(parcel.data)["action"]
            self.bodies.append((shipment.cohort_id, action, parcel.members.uids()))
            settle(parcel.members)
            shipment.done += 1


class OpenLimiter:
    def has_capacity(self) -> bool:
        return True


def pipeline(sender: AcceptingSender, **batching: Any) -> Pipeline:
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "dlq", "topics": [TOPIC]},
            "moengage": {"base_url": "http://unused", "max_payload_bytes": 1024},
            "batching": {"linger_ms": FOREVER_MS, "max_hold_ms": FOREVER_MS, **batching},
            "deadlines": {"revoke_flush_seconds": 30, "shutdown_flush_seconds": 30},
        }
    )
    return Pipeline(settings, sender, OpenLimiter(), None, Metrics())  # type: ignore[arg-type]


def log(cohorts: int, members: int) -> tuple[list[Message], dict[str, set[str]]]:
    """`members` enters per cohort (and, for every third cohort, a member that enters and
    leaves again), in runs of one partition; the membership each cohort must end with."""
    offsets = dict.fromkeys(PARTITIONS, 0)
    messages: list[Message] = []
    expected: dict[str, set[str]] = {}

    def event(partition: int, action: str, cohort: str, uid: str) -> None:
        tp = PARTITIONS[partition]
        value = orjson.dumps({"action": action, "cohort_id": cohort, "uid": uid, "ts": 1})
        messages.append(Message(topic=TOPIC, partition=partition, offset=offsets[tp],
                                key=uid.encode(), value=value, timestamp=(1, 0)))  # fmt: skip
        offsets[tp] += 1

    for i in range(cohorts):
        cohort = f"cohort-{i}"
        expected[cohort] = {f"user-{i}-{m}" for m in range(members)}
        for uid in sorted(expected[cohort]):
            event(i % 3, "enter", cohort, uid)
        if i % 3 == 0:
            event(i % 3, "enter", cohort, f"flapper-{i}")
            event(i % 3, "exit", cohort, f"flapper-{i}")
    messages.sort(key=lambda m: m.partition())  # stable: offsets still rise per partition
    return messages, expected


def ends(messages: list[Message]) -> dict[TopicPartition, int]:
    """Each partition's commit point once every message is settled."""
    return {(TOPIC, m.partition()): m.offset() + 1 for m in messages}  # offsets rise


async def drain_by(how: str, p: Pipeline, end: dict[TopicPartition, int]) -> None:
    """Send everything buffered the way `how` makes cohorts due, until nothing is held."""
    if how == "shutdown":
        p.flush_everything = True
        assert await p.drain(None, p._clock() + 30)
    elif how == "revoke":
        assert await p.revoking(PARTITIONS) == end
    else:  # linger or full bodies: the dispatcher alone
        for _ in range(10_000):
            if not p.tracker.pending_events() and not p.sending:
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"not drained: {p.tracker.pending_events()} events pending")


DRAINS = {
    # how -> (batching settings, members per cohort, backlogged)
    "linger": ({"linger_ms": 0}, 1, False),
    # while catching up only full bodies go (120 members are more than a 1,024-byte body
    # holds), then each remainder once it is held max_hold_ms
    "full bodies": ({"max_hold_ms": 20}, 120, True),
    "shutdown": ({}, 1, False),
    "revoke": ({}, 1, False),
}


@pytest.fixture
def due_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How often the dispatch policy judged one cohort (streamer.batch.due)."""
    calls = [0]
    real: Callable[..., Any] = batch.due

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "due", counting)
    yield calls


@pytest.mark.asyncio
@pytest.mark.parametrize("how", sorted(DRAINS))
@pytest.mark.parametrize("cohorts", [1, 37, 1500])
async def test_after_a_drain_no_cohort_is_tracked_and_each_was_sent_once(
    how: str, cohorts: int, due_calls: list[int]
) -> None:
    settings, members, backlogged = DRAINS[how]
    if how == "full bodies":
        cohorts = min(cohorts, 200)  # 120 events each
    sender = AcceptingSender()
    p = pipeline(sender, **settings)
    await p.assigned(PARTITIONS)
    messages, expected = log(cohorts, members)
    p.backlogged = backlogged
    dispatcher = asyncio.create_task(p.dispatch_forever())
    try:
        for start in range(0, len(messages), 500):
            p.ingest(messages[start : start + 500])
            await asyncio.sleep(0)
        await drain_by(how, p, ends(messages))
    finally:
        dispatcher.cancel()
        await p.stop()

    assert len(p.cohorts) == 0, f"{len(p.cohorts)} idle cohorts still tracked"
    assert (p.buffered_events, p.buffered_bytes, p.tracker.pending_events()) == (0, 0, 0)
    if how != "revoke":  # a revoke forgets the partitions it committed
        assert p.tracker.commit_points(PARTITIONS) == ends(messages)
    sent: dict[str, set[str]] = {}
    removed: dict[str, set[str]] = {}
    for cohort, action, uids in sender.bodies:
        into = sent if action == "add_members" else removed
        assert not into.setdefault(cohort, set()) & set(uids), "a member sent twice"
        into[cohort] |= set(uids)
    assert {c: uids - removed.get(c, set()) for c, uids in sent.items()} == expected
    # each pick looks at a few cohorts, not at all of them: a drain is linear in the cohorts
    assert cohorts <= due_calls[0] <= 8 * (len(sender.bodies) + cohorts) + 100, due_calls[0]


@pytest.mark.asyncio
@pytest.mark.parametrize("cohorts", [1, 20, 800])
async def test_cohorts_dropped_on_lost_partitions_are_freed(cohorts: int) -> None:
    p = pipeline(AcceptingSender())
    await p.assigned(PARTITIONS)
    messages, _ = log(cohorts, 2)
    p.ingest(messages)
    assert len(p.cohorts) == cohorts
    await p.lost(PARTITIONS[:1])  # the cohorts of partition 0 have nothing left
    assert len(p.cohorts) == cohorts - len(range(0, cohorts, 3))
    await p.lost(PARTITIONS[1:])
    assert len(p.cohorts) == 0
    assert (p.buffered_events, p.buffered_bytes) == (0, 0)


@pytest.mark.parametrize("name", [None, "same", "own name"])
def test_a_buffer_named_like_its_cohort_holds_one_string_for_both(name: str | None) -> None:
    """A buffered cohort's small objects stay in pymalloc arenas a burst spreads over: its
    name, when the event gives none or repeats the id, is the id's string, not a copy."""
    p = pipeline(AcceptingSender())
    messages = []
    for i in range(50):
        event = {"action": "enter", "cohort_id": f"cohort-{i}", "uid": f"user-{i}"}
        if name is not None:
            event["cohort_name"] = f"cohort-{i}" if name == "same" else f"{name} {i}"
        messages.append(Message(topic=TOPIC, partition=0, offset=i, key=None,
                                value=orjson.dumps(event), timestamp=(1, 0)))  # fmt: skip
    p.ingest(messages)
    buffers = [c.open for c in p.cohorts.buffers()]
    assert len(buffers) == 50
    for i, buf in enumerate(buffers):
        assert buf is not None
        if name == "own name":
            assert buf.name == f"own name {i}"
        else:
            assert buf.name is buf.cohort_id
