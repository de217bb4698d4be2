"""streamer/cohorts.py: the active cohorts pick exactly what the plain rule picks over every
cohort ever seen, while tracking only those with a buffer or a delivery in flight.

The reference is the dispatch of before (batch.pick_due / pick_largest walking every cohort the
pipeline had seen, and next_due_at / stalled doing the same), run over random histories of
buffers opened and filled, sealed in any way, delivered, forced, and dropped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.batch import Cohort, Pick, Take, Timing, due, pick_due, pick_largest
from streamer.cohorts import SHRINK_ABOVE, SHRINK_FACTOR, ActiveCohorts
from streamer.offsets import TopicPartition
from streamer.seal import Shipment, seal
from tests.fixtures.buffers import P0, P1, Feed

# a body's envelope is ~100 bytes and a member's estimate ~43 bytes: five members fill one
FULL_BYTES = 200
IDS = [f"c{i}" for i in range(6)]


def uid_of(n: int) -> str:
    return f"user-{n:02d}-{'x' * 24}"


@dataclass
class History:
    """The registry under test and what the old pipeline kept: every cohort ever seen."""

    active: ActiveCohorts = field(default_factory=lambda: ActiveCohorts(FULL_BYTES))
    seen: list[Cohort] = field(default_factory=list)
    opening_order: list[Cohort] = field(default_factory=list)  # by when the buffer opened
    in_flight: list[tuple[Cohort, Shipment]] = field(default_factory=list)
    clock: float = 0.0

    def fill(self, cohort_id: str, events: list[tuple[int, bool, bool]]) -> None:
        """Events into the cohort's buffer (opened now if it has none), as ingest does."""
        before = self.active.get(cohort_id)
        reopened = before is None or before.open is None
        buf = self.active.buffer(cohort_id, self.clock)
        Feed(P0, P1).batch(buf, [(uid_of(n), add, P1 if p1 else P0) for n, add, p1 in events])
        self.active.ingested()
        cohort = self.active.by_id[cohort_id]
        if not any(c is cohort for c in self.seen):
            self.seen.append(cohort)
        if reopened:
            self.opening_order = [c for c in self.opening_order if c is not cohort] + [cohort]

    def seal(self, cohort: Cohort, take: Take) -> None:
        """As Pipeline._start_delivery: seal, then in flight if anything is to be sent."""
        assert cohort.open is not None and not cohort.busy
        shipment = seal(cohort.open, "p", FULL_BYTES, take)
        in_flight = bool(shipment.parcels or shipment.too_large)
        self.active.taken(cohort, in_flight)
        if in_flight:
            self.in_flight.append((cohort, shipment))

    def delivered(self, index: int) -> None:
        cohort, _ = self.in_flight.pop(index % len(self.in_flight))
        self.active.delivered(cohort)

    def stopped(self, index: int) -> None:
        """A delivery stopped by a revoke: its events go back to the buffer (Pipeline._requeue)."""
        cohort, shipment = self.in_flight.pop(index % len(self.in_flight))
        self.active.delivered(cohort)
        buf = self.active.buffer(cohort.cohort_id, self.clock)
        for members in shipment.unsettled():
            own, other = (buf.adds, buf.removes) if members.add else (buf.removes, buf.adds)
            members.requeue(own, other, set())
        requeued = self.active.by_id[cohort.cohort_id]
        self.active.changed(requeued)
        if requeued is not cohort:
            self.seen.append(requeued)
            self.opening_order.append(requeued)

    def drop(self, partitions: set[TopicPartition]) -> None:
        for cohort in self.active.buffers():
            if cohort.open is not None:
                cohort.open.drop_partitions(partitions)
            self.active.changed(cohort)


def check(h: History, now: float, timing: Timing, scarce: bool) -> None:
    pick = h.active.pick(now, timing, scarce)
    old = pick_due(h.seen, now, timing, FULL_BYTES, scarce)
    # the same cohort as the plain rule over buffers in opening order; against the old order
    # (first seen) only ties of opened_at may differ
    assert pick == pick_due(h.opening_order, now, timing, FULL_BYTES, scarce)
    assert _when(pick) == _when(old)
    if pick is not None:
        assert due(pick.cohort, now, timing, FULL_BYTES, scarce) == pick

    full = any(c.open is not None and c.open.has_full_body(FULL_BYTES) for c in h.seen)
    assert h.active.any_full() == full
    assert _larger(h.active.largest()) == _larger(pick_largest(h.seen))

    wait = timing.wait(scarce)
    ats = [c.open.opened_at + wait for c in h.seen if c.open is not None and not c.busy]
    assert h.active.next_due_at(now, wait) == (min(ats) if ats and min(ats) > now else None)

    with_work = {id(c) for c in h.seen if c.open is not None or c.busy}
    assert {id(c) for c in h.active.by_id.values()} == with_work  # idle cohorts are forgotten
    assert len(h.active) == len(with_work)
    assert h.active.buffered == sum(c.open is not None for c in h.seen)
    assert all(len(c.open) for c in h.seen if c.open is not None)  # no empty buffer stays open
    # what the native ingest loop reads: exactly the open buffers
    opened = {c.cohort_id: c.open for c in h.seen if c.open is not None}
    assert h.active.open_buffers.keys() == opened.keys()
    assert all(h.active.open_buffers[cid] is buf for cid, buf in opened.items())


def _when(pick: Pick | None) -> tuple[float, Take] | None:
    if pick is None or pick.cohort.open is None:
        return None
    return pick.cohort.open.opened_at, pick.take


def _larger(pick: Pick | None) -> int | None:
    buf = pick.cohort.open if pick is not None else None
    return None if buf is None else max(buf.add_bytes, buf.remove_bytes)


events = st.lists(
    st.tuples(st.integers(0, 15), st.booleans(), st.booleans()), min_size=1, max_size=9
)
steps = st.one_of(
    st.tuples(st.just("fill"), st.sampled_from(IDS), events, st.sampled_from([0, 0, 0.5, 2])),
    st.tuples(st.just("seal"), st.integers(0, 99), st.sampled_from(list(Take))),
    st.tuples(st.just("seal picked"), st.sampled_from([0.0, 1.0, 10.0]), st.booleans()),
    st.tuples(st.just("delivered"), st.integers(0, 99)),
    st.tuples(st.just("stopped"), st.integers(0, 99)),
    st.tuples(st.just("force"), st.sampled_from([None, {P0}, {P1}])),
    st.tuples(st.just("drop"), st.sampled_from([{P0}, {P1}])),
)
checks = st.tuples(
    st.sampled_from([0.0, 0.5, 1.0, 3.0, 100.0]),
    st.builds(Timing, st.sampled_from([0.0, 1.0, 2.5]), st.sampled_from([3.0, 50.0])),
    st.booleans(),
)


@given(st.lists(st.tuples(steps, checks), max_size=40))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_picks_like_the_plain_rule_over_every_cohort_ever_seen(
    history: list[tuple[tuple[object, ...], tuple[float, Timing, bool]]],
) -> None:
    h = History()
    for step, (ahead, timing, scarce) in history:
        apply(h, step, timing)
        check(h, h.clock + ahead, timing, scarce)


def apply(h: History, step: tuple[object, ...], timing: Timing) -> None:
    kind = step[0]
    if kind == "fill":
        _, cohort_id, evts, dt = step
        h.clock += dt  # type: ignore[operator]
        h.fill(cohort_id, evts)  # type: ignore[arg-type]
    elif kind == "seal":
        idle = [c for c in h.active.buffers() if not c.busy]
        if idle:
            h.seal(idle[step[1] % len(idle)], step[2])  # type: ignore[operator, arg-type]
    elif kind == "seal picked":  # what the dispatcher does
        pick = h.active.pick(h.clock + step[1], timing, bool(step[2]))  # type: ignore[operator]
        if pick is not None:
            h.seal(pick.cohort, pick.take)
    elif kind == "delivered" and h.in_flight:
        h.delivered(step[1])  # type: ignore[arg-type]
    elif kind == "stopped" and h.in_flight:
        h.stopped(step[1])  # type: ignore[arg-type]
    elif kind == "force":
        h.active.force(step[1])  # type: ignore[arg-type]
    elif kind == "drop":
        h.drop(step[1])  # type: ignore[arg-type]


def test_next_due_at_is_the_oldest_idle_buffer_s_expiry_while_still_ahead() -> None:
    h = History()
    assert h.active.next_due_at(0.0, 1.0) is None
    h.clock = 3.0
    h.fill("b", [(1, True, False)])
    h.seal(h.active.by_id["b"], Take.EVERYTHING)  # in flight, no buffer
    h.fill("b", [(2, True, False)])  # a new buffer while in flight: not due before it is done
    h.clock = 4.5
    h.fill("c", [(1, True, False)])
    h.clock = 7.0
    h.fill("a", [(1, True, False)])
    assert h.active.next_due_at(0.0, 1.5) == 6.0  # c's: b's delivery is in flight
    # past: the oldest waits for capacity, not for time (the dispatcher polls)
    assert h.active.next_due_at(6.5, 1.5) is None
    h.delivered(0)
    assert h.active.next_due_at(0.0, 1.5) == 4.5  # b's new buffer, opened at 3.0


def _table_bytes(active: ActiveCohorts) -> int:
    """What the registry's tables (its dicts, ordered or not) occupy."""
    return sum(sys.getsizeof(v) for v in vars(active).values() if isinstance(v, dict))


@pytest.mark.parametrize("burst", [5_000, 20_000, 60_000])
@pytest.mark.parametrize("kept", [0, 10, 1_000])
def test_tables_that_grew_with_a_burst_shrink_once_it_has_drained(burst: int, kept: int) -> None:
    """A dict keeps its largest table after deletions: once most cohorts are forgotten, the
    registry's tables are rebuilt to the size of what is left, within the shrink factor
    (identity kept: the native loop holds by_id)."""
    active = ActiveCohorts(FULL_BYTES)
    by_id = active.by_id
    cohorts = []
    for i in range(burst):
        active.buffer(f"burst-{i}", float(i))
        cohorts.append(active.by_id[f"burst-{i}"])
    grown = _table_bytes(active)
    for cohort in cohorts[kept:]:  # empty buffers close: each cohort is forgotten
        active.changed(cohort)
    assert len(active) == active.buffered == kept
    assert active.by_id is by_id
    assert [c.cohort_id for c in active.buffers()] == [f"burst-{i}" for i in range(kept)]
    small = ActiveCohorts(FULL_BYTES)
    # the tables of a registry that only ever held SHRINK_FACTOR times what is left (or the
    # most a registry keeps without a rebuild)
    for i in range(max(kept * SHRINK_FACTOR, SHRINK_ABOVE)):
        small.buffer(f"small-{i}", float(i))
    assert grown > _table_bytes(small)  # the burst outgrew the bound
    assert _table_bytes(active) <= _table_bytes(small)
