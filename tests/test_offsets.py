"""streamer/offsets.py: the commit watermark is the lowest offset not yet acknowledged."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.offsets import OffsetTracker, PartitionOffsets, PendingRange

TP = ("events", 0)
OTHER = ("events", 1)


def tracker(*tps: tuple[str, int]) -> OffsetTracker:
    t = OffsetTracker()
    t.assign(list(tps or (TP,)))
    return t


def consume(t: OffsetTracker, tp: tuple[str, int], first: int, last: int) -> PendingRange:
    """One consumed batch of a partition, as the pipeline records it: one event per offset."""
    rng = t.track(tp, first, last, last - first + 1)
    t.consumed([rng])
    return rng


def test_nothing_consumed_means_no_commit_point() -> None:
    t = tracker()
    assert t.commit_points() == {}
    assert t.pending_events() == 0


def test_watermark_is_first_offset_of_oldest_unfinished_range() -> None:
    t = tracker()
    r1 = consume(t, TP, 10, 19)
    consume(t, TP, 20, 29)
    assert t.commit_points() == {TP: 10}
    r1.ack(9)
    assert t.commit_points() == {TP: 10}  # one event of the first range still pending
    r1.ack()
    assert t.commit_points() == {TP: 20}
    assert t.pending_events() == 10


def test_last_consumed_plus_one_when_nothing_pending() -> None:
    t = tracker()
    r1 = consume(t, TP, 0, 4)
    r2 = consume(t, TP, 5, 9)
    r1.ack(5)
    r2.ack(5)
    assert t.commit_points() == {TP: 10}
    assert t.pending_events() == 0


def test_out_of_order_completion_holds_the_watermark() -> None:
    t = tracker()
    r1 = consume(t, TP, 0, 9)
    r2 = consume(t, TP, 10, 19)
    r3 = consume(t, TP, 20, 29)
    r3.ack(10)
    r2.ack(10)
    assert t.commit_points() == {TP: 0}
    r1.ack(10)
    assert t.commit_points() == {TP: 30}


def test_a_done_range_in_the_middle_does_not_move_the_watermark() -> None:
    t = tracker()
    r1 = consume(t, TP, 0, 9)
    r2 = consume(t, TP, 10, 19)
    consume(t, TP, 20, 29)
    r2.ack(10)
    r1.ack(10)
    assert t.commit_points() == {TP: 20}


def test_commit_points_only_when_the_watermark_moved() -> None:
    t = tracker()
    r1 = consume(t, TP, 0, 9)
    r2 = consume(t, TP, 10, 19)
    points = t.commit_points()
    assert points == {TP: 0}
    t.mark_committed(points)
    assert t.commit_points() == {}
    r1.ack(10)
    points = t.commit_points()
    assert points == {TP: 10}
    t.mark_committed(points)
    assert t.commit_points() == {}
    assert t.committed_offsets() == {TP: 10}
    r2.ack(10)
    assert t.commit_points() == {TP: 20}


def test_commit_points_per_partition_and_only_filter() -> None:
    t = tracker(TP, OTHER)
    a = consume(t, TP, 0, 9)
    consume(t, OTHER, 100, 109)
    a.ack(10)
    assert t.commit_points() == {TP: 10, OTHER: 100}
    assert t.commit_points([OTHER]) == {OTHER: 100}
    assert t.commit_points([("unknown", 3)]) == {}
    t.mark_committed({TP: 10})
    assert t.commit_points() == {OTHER: 100}


def test_consumed_moves_next_offset_past_the_whole_batch() -> None:
    t = tracker()
    # the pipeline tracks a range at the first message and extends `last` as it goes
    rng = t.track(TP, 50, 50, 0)
    for _ in range(5):
        rng.pending += 1
        rng.last += 1
    rng.ack(5)
    t.consumed([rng])
    assert t.commit_points() == {TP: 56}


def test_consumed_ignores_unassigned_partitions() -> None:
    t = tracker()
    orphan = t.track(OTHER, 0, 9, 10)
    t.consumed([orphan])
    assert t.assigned() == [TP]
    assert t.commit_points() == {}


def test_forget_makes_late_acks_of_that_partition_never_appear() -> None:
    t = tracker(TP, OTHER)
    old = consume(t, TP, 0, 9)
    consume(t, OTHER, 0, 0)
    t.forget([TP])
    assert TP not in t.assigned()
    old.ack(10)  # a delivery of the earlier assignment finishes late
    assert TP not in t.commit_points()
    # re-assignment starts fresh: the old acks are not counted for the new owner's ranges
    t.assign([TP])
    assert t.commit_points([TP]) == {}
    new = consume(t, TP, 0, 9)
    old.ack(10)
    assert t.commit_points([TP]) == {TP: 0}
    new.ack(10)
    assert t.commit_points([TP]) == {TP: 10}


def test_forget_discards_committed_state() -> None:
    t = tracker()
    r = consume(t, TP, 0, 9)
    r.ack(10)
    t.mark_committed(t.commit_points())
    t.forget([TP])
    t.assign([TP])
    assert t.committed_offsets() == {}
    consume(t, TP, 5, 5)  # the new owner may rewind; its watermark is reported again
    assert t.commit_points() == {TP: 5}


def test_track_on_an_unassigned_partition_is_an_orphan() -> None:
    t = tracker()
    orphan = t.track(OTHER, 0, 9, 10)
    assert orphan.tp == OTHER
    orphan.ack(10)
    t.assign([OTHER])
    assert t.commit_points() == {}
    assert t.pending_events() == 0


def test_mark_committed_of_a_forgotten_partition_is_ignored() -> None:
    t = tracker()
    t.mark_committed({OTHER: 5})
    assert t.committed_offsets() == {}


def test_partition_offsets_watermark_none_before_any_consume() -> None:
    assert PartitionOffsets().watermark() is None


@given(
    st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=12),
    st.randoms(use_true_random=False),
)
@settings(max_examples=100, deadline=None)
def test_watermark_equals_lowest_unacknowledged_offset(
    sizes: list[int], rnd: random.Random
) -> None:
    """Model check: ack single events in random order; the commit point is always the lowest
    offset whose event is not acknowledged (ranges complete as a whole), never beyond it."""
    t = tracker()
    ranges: list[PendingRange] = []
    offset = 100
    for size in sizes:
        ranges.append(consume(t, TP, offset, offset + size - 1))
        offset += size
    end = offset
    acks = [i for i, size in enumerate(sizes) for _ in range(size)]
    rnd.shuffle(acks)
    pending = list(sizes)
    committed = None
    for index in acks:
        ranges[index].ack()
        pending[index] -= 1
        first_open = next((i for i, p in enumerate(pending) if p > 0), None)
        expected = end if first_open is None else ranges[first_open].first
        points = t.commit_points()
        if committed is None or expected > committed:
            assert points == {TP: expected}
            t.mark_committed(points)
            committed = expected
        else:
            assert points == {}
    assert committed == end
