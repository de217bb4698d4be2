"""streamer/batch.py: coalescing buffers, acknowledgement and the due/oldest-first policy."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from streamer.batch import (
    MEMBER_OVERHEAD,
    Cohort,
    CohortBuffer,
    SourceMessage,
    is_due,
    next_due_at,
    pick_due,
)
from streamer.offsets import OffsetTracker, PendingRange, TopicPartition
from streamer.payload import Envelope, member_bytes

P0: TopicPartition = ("events", 0)
P1: TopicPartition = ("events", 1)


@dataclass
class FakeMessage:
    _value: bytes | None
    _topic: str = "events"
    _partition: int = 0
    _offset: int = 0
    _key: bytes | None = None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000 + self._offset)


def _protocol_check(msg: FakeMessage) -> SourceMessage:
    return msg  # mypy: the fake satisfies the protocol


class Feed:
    """Puts events into a buffer the way the pipeline does: one range per (batch, partition)."""

    def __init__(self, *tps: TopicPartition) -> None:
        self.tracker = OffsetTracker()
        self.tracker.assign(list(tps or (P0,)))
        self.next_offset: dict[TopicPartition, int] = {}

    def batch(
        self, buf: CohortBuffer, events: list[tuple[str, bool, TopicPartition]]
    ) -> tuple[list[bool], dict[TopicPartition, PendingRange]]:
        ranges: dict[TopicPartition, PendingRange] = {}
        superseded = []
        for uid, add, tp in events:
            offset = self.next_offset.get(tp, 0)
            self.next_offset[tp] = offset + 1
            rng = ranges.get(tp)
            if rng is None:
                rng = ranges[tp] = self.tracker.track(tp, offset, offset, 0)
            rng.pending += 1
            rng.last = offset
            value = f'{{"uid":"{uid}","action":"{"enter" if add else "exit"}"}}'.encode()
            msg = FakeMessage(value, tp[0], tp[1], offset)
            superseded.append(buf.put(uid, (add, _protocol_check(msg), None), rng, len(value)))
        self.tracker.consumed(ranges.values())
        return superseded, ranges

    def watermarks(self) -> dict[TopicPartition, int]:
        return self.tracker.commit_points()


# --- coalescing ---


def test_latest_action_per_uid_wins() -> None:
    buf = CohortBuffer("c", 0.0)
    feed = Feed()
    superseded, _ = feed.batch(
        buf,
        [("a", True, P0), ("b", True, P0), ("a", False, P0), ("b", False, P0), ("b", True, P0)],
    )
    assert superseded == [False, False, True, True, True]
    assert buf.split_actions() == (["b"], ["a"])
    assert buf.events == 5
    assert len(buf.entries) == 2


def test_enter_then_exit_sends_only_the_remove() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed().batch(buf, [("u", True, P0), ("u", False, P0)])
    assert buf.split_actions() == ([], ["u"])


def test_exit_then_enter_sends_only_the_add() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed().batch(buf, [("u", False, P0), ("u", True, P0)])
    assert buf.split_actions() == (["u"], [])


def test_winner_keeps_the_latest_message() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed().batch(buf, [("u", True, P0), ("v", True, P0), ("u", True, P0)])
    add, msg, ts = buf.entries["u"]
    assert add is True
    assert msg.offset() == 2
    assert ts is None


def test_split_actions_keeps_first_arrival_order_and_each_uid_once() -> None:
    buf = CohortBuffer("c", 0.0)
    events = [(f"u{i}", i % 3 != 0, P0) for i in range(30)]
    events += [(f"u{i}", True, P0) for i in range(0, 30, 3)]
    Feed().batch(buf, events)
    adds, removes = buf.split_actions()
    assert adds == [f"u{i}" for i in range(30)]
    assert removes == []


def test_size_accounting() -> None:
    buf = CohortBuffer("c", 5.0)
    feed = Feed()
    feed.batch(buf, [("ab", True, P0), ("ab", False, P0), ("xyz", True, P0)])
    # a distinct uid adds its member to the body; a superseded one adds nothing
    assert buf.est_body_bytes == (2 + MEMBER_OVERHEAD) + (3 + MEMBER_OVERHEAD)
    # and the estimate is the real member size plus its separating comma, for plain uids
    assert len(member_bytes("")) + 1 == MEMBER_OVERHEAD
    # nbytes counts every event's value, superseded included
    values = [
        b'{"uid":"ab","action":"enter"}',
        b'{"uid":"ab","action":"exit"}',
        b'{"uid":"xyz","action":"enter"}',
    ]
    assert buf.nbytes == sum(len(v) for v in values)
    assert buf.opened_at == 5.0


def test_estimate_tracks_the_real_body_for_ascii_uids() -> None:
    buf = CohortBuffer("c", 0.0)
    uids = [f"user-{i:05d}" for i in range(200)]
    Feed().batch(buf, [(u, True, P0) for u in uids])
    env = Envelope("add_members", "p", "c", "c", None)
    real = len(env.body([member_bytes(u) for u in uids])) - env.overhead
    assert buf.est_body_bytes == real + 1  # the estimate counts one comma per member


# --- acknowledgement ---


def test_acknowledge_acks_every_event_put_including_superseded() -> None:
    buf = CohortBuffer("c", 0.0)
    feed = Feed()
    feed.batch(buf, [("u", True, P0), ("u", False, P0), ("u", True, P0), ("v", False, P0)])
    assert feed.watermarks() == {P0: 0}
    assert feed.tracker.pending_events() == 4
    buf.acknowledge()
    assert feed.tracker.pending_events() == 0
    assert feed.watermarks() == {P0: 4}


def test_acknowledge_across_batches_and_partitions() -> None:
    buf = CohortBuffer("c", 0.0)
    feed = Feed(P0, P1)
    _, first = feed.batch(buf, [("u", True, P0), ("v", True, P1)])
    _, second = feed.batch(buf, [("u", False, P0), ("w", True, P0), ("v", False, P1)])
    assert {r: c for r, c in buf.ranges.items()} == {
        first[P0]: 1,
        first[P1]: 1,
        second[P0]: 2,
        second[P1]: 1,
    }
    assert buf.partitions() == {P0, P1}
    buf.acknowledge()
    assert feed.watermarks() == {P0: 3, P1: 2}


def test_two_buffers_share_a_range_and_commit_waits_for_both() -> None:
    a, b = CohortBuffer("a", 0.0), CohortBuffer("b", 0.0)
    feed = Feed()
    tracker = feed.tracker
    rng = tracker.track(P0, 0, 0, 0)
    for offset, buf in enumerate([a, b, a]):
        rng.pending += 1
        rng.last = offset
        msg = FakeMessage(b"{}", "events", 0, offset)
        buf.put(f"u{offset}", (True, msg, None), rng, 2)
    tracker.consumed([rng])
    a.acknowledge()
    assert tracker.commit_points() == {P0: 0}  # b's event is still in flight
    b.acknowledge()
    assert tracker.commit_points() == {P0: 3}


def test_unacknowledged_buffer_holds_the_watermark() -> None:
    held, done = CohortBuffer("held", 0.0), CohortBuffer("done", 0.0)
    feed = Feed()
    feed.batch(held, [("x", True, P0)])
    feed.batch(done, [("y", True, P0), ("z", True, P0)])
    done.acknowledge()
    assert feed.watermarks() == {P0: 0}
    held.acknowledge()
    assert feed.watermarks() == {P0: 3}


# --- dropping lost partitions ---


def test_drop_partitions_forgets_their_events() -> None:
    buf = CohortBuffer("c", 0.0)
    feed = Feed(P0, P1)
    feed.batch(buf, [("a", True, P0), ("b", True, P1), ("b", False, P1), ("c", False, P0)])
    dropped = buf.drop_partitions({P1})
    assert dropped == 1
    assert set(buf.entries) == {"a", "c"}
    assert buf.events == 2
    assert buf.partitions() == {P0}
    assert buf.nbytes == sum(len(e[1].value() or b"") for e in buf.entries.values())
    assert buf.split_actions() == (["a"], ["c"])
    buf.acknowledge()
    assert feed.tracker.commit_points([P0]) == {P0: 2}
    assert feed.tracker.commit_points([P1]) == {P1: 0}  # the dropped events were never acked


def test_drop_partitions_of_untouched_partition_changes_nothing() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed().batch(buf, [("a", True, P0), ("a", False, P0)])
    before = (dict(buf.entries), dict(buf.ranges), buf.events)
    assert buf.drop_partitions({P1}) == 0
    assert (buf.entries, buf.ranges, buf.events) == before


def test_drop_all_partitions_empties_the_buffer() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed(P0, P1).batch(buf, [("a", True, P0), ("b", True, P1)])
    assert buf.drop_partitions({P0, P1}) == 2
    assert buf.entries == {}
    assert buf.ranges == {}
    assert buf.events == 0
    assert buf.nbytes == 0


# --- due policy ---


def cohort(cid: str, opened_at: float | None, *, busy: bool = False, uids: int = 1) -> Cohort:
    c = Cohort(cid)
    if opened_at is not None:
        c.open = CohortBuffer(cid, opened_at)
        Feed().batch(c.open, [(f"{cid}-{i}", True, P0) for i in range(uids)])
    c.busy = busy
    return c


def test_is_due_by_linger() -> None:
    c = cohort("a", 10.0)
    assert not is_due(c, 10.999, linger_s=1.0, full_bytes=10**6)
    assert is_due(c, 11.0, linger_s=1.0, full_bytes=10**6)
    assert is_due(c, 10.0, linger_s=0.0, full_bytes=10**6)


def test_is_due_when_full_by_bytes() -> None:
    c = cohort("a", 10.0, uids=10)
    full = c.open.est_body_bytes if c.open else 0
    assert is_due(c, 10.0, linger_s=100.0, full_bytes=full)
    assert not is_due(c, 10.0, linger_s=100.0, full_bytes=full + 1)


def test_busy_or_empty_cohort_is_never_due() -> None:
    busy = cohort("a", 0.0, busy=True, uids=1000)
    assert not is_due(busy, 1e9, linger_s=0.0, full_bytes=1)
    empty = cohort("b", None)
    assert not is_due(empty, 1e9, linger_s=0.0, full_bytes=1)


def test_pick_due_is_oldest_first_among_due() -> None:
    cohorts = [
        cohort("young", 9.5),
        cohort("old", 2.0),
        cohort("older-but-busy", 1.0, busy=True),
        cohort("not-due", 9.9),
        cohort("middle", 5.0),
        cohort("none", None),
    ]
    assert pick_due(cohorts, 10.0, linger_s=0.5, full_bytes=10**6) is cohorts[1]
    cohorts[1].busy = True
    assert pick_due(cohorts, 10.0, linger_s=0.5, full_bytes=10**6) is cohorts[4]
    cohorts[4].open = None
    assert pick_due(cohorts, 10.0, linger_s=0.5, full_bytes=10**6) is cohorts[0]
    cohorts[0].busy = True
    assert pick_due(cohorts, 10.0, linger_s=0.5, full_bytes=10**6) is None


def test_pick_due_full_cohort_is_due_before_linger_but_older_due_goes_first() -> None:
    full = cohort("full", 9.99, uids=100)
    full_bytes = full.open.est_body_bytes if full.open else 0
    lingering = cohort("lingering", 1.0)
    fresh = cohort("fresh", 9.0)
    assert pick_due([fresh, full], 10.0, 5.0, full_bytes) is full
    assert pick_due([fresh, full, lingering], 10.0, 5.0, full_bytes) is lingering


def test_pick_due_none_starves_under_repeated_picking() -> None:
    """Served oldest-first, every due cohort is picked before any cohort that opened later."""
    cohorts = [cohort(f"c{i}", float(i)) for i in (5, 3, 8, 1, 9, 2)]
    served = []
    now = 100.0
    while (c := pick_due(cohorts, now, 1.0, 10**6)) is not None:
        served.append(c.cohort_id)
        c.open = None  # sealed and handed to the sender
    assert served == ["c1", "c2", "c3", "c5", "c8", "c9"]


def test_next_due_at() -> None:
    assert next_due_at([], 1.0) is None
    assert next_due_at([cohort("a", None), cohort("b", 0.0, busy=True)], 1.0) is None
    cohorts = [cohort("a", 7.0), cohort("b", 3.0, busy=True), cohort("c", 4.5), cohort("d", None)]
    assert next_due_at(cohorts, 1.5) == pytest.approx(6.0)
