"""streamer/batch.py: coalescing buffers, early settlement of superseded events, due policy."""

from __future__ import annotations

from streamer._fastpath import MEMBER_OVERHEAD
from streamer.batch import (
    Cohort,
    CohortBuffer,
    Pick,
    Take,
    Timing,
    due,
    pick_due,
    pick_largest,
)
from tests.fixtures.bodies import member_bytes
from tests.fixtures.buffers import P0, P1, Feed, actions, settle


def member_size(uid: str) -> int:
    return len(uid) + MEMBER_OVERHEAD


# --- coalescing ---


def test_latest_action_per_uid_wins() -> None:
    buf = CohortBuffer("c", 0.0)
    superseded = Feed().batch(
        buf,
        [("a", True, P0), ("b", True, P0), ("a", False, P0), ("b", False, P0), ("b", True, P0)],
    )
    assert [s is not None for s in superseded] == [False, False, True, True, True]
    assert actions(buf) == (["b"], ["a"])


def test_winner_keeps_the_latest_message_and_put_returns_the_superseded_one() -> None:
    buf = CohortBuffer("c", 0.0)
    superseded = Feed().batch(buf, [("u", True, P0), ("v", True, P0), ("u", False, P0)])
    winner = buf.entries["u"]
    assert winner.size == len(winner.value)
    assert (winner.add, winner.offset, winner.key) == (False, 2, b"u")
    assert winner.ts_ms == 1_700_000_000_002
    assert b'"exit"' in winner.value
    old = superseded[2]
    assert old is not None and old.offset == 0


def test_superseded_event_is_settled_at_once_and_the_winner_holds_the_watermark() -> None:
    buf = CohortBuffer("c", 0.0)
    feed = Feed()
    feed.batch(buf, [("u", True, P0), ("v", True, P0)])  # offsets 0, 1: one range
    feed.batch(buf, [("w", True, P0)])  # offset 2
    feed.batch(buf, [("u", False, P0), ("v", False, P0)])  # offsets 3, 4 supersede 0 and 1
    assert feed.watermarks() == {P0: 2}  # the first range is settled; w (offset 2) is held
    assert feed.tracker.pending_events() == 3
    settle(list(buf.entries.values()))
    assert feed.watermarks() == {P0: 5}


def test_byte_estimates_per_action_follow_flips() -> None:
    buf = CohortBuffer("c", 5.0)
    feed = Feed()
    feed.batch(buf, [("ab", True, P0), ("xyz", True, P0)])
    assert (buf.add_bytes, buf.remove_bytes) == (member_size("ab") + member_size("xyz"), 0)
    feed.batch(buf, [("ab", False, P0)])
    assert (buf.add_bytes, buf.remove_bytes) == (member_size("xyz"), member_size("ab"))
    feed.batch(buf, [("ab", False, P0), ("ab", True, P0)])
    assert (buf.add_bytes, buf.remove_bytes) == (member_size("xyz") + member_size("ab"), 0)
    assert buf.est_bytes == member_size("xyz") + member_size("ab")
    assert buf.opened_at == 5.0


def test_estimate_is_the_real_body_for_ascii_uids() -> None:
    buf = CohortBuffer("c", 0.0)
    uids = [f"user-{i:05d}" for i in range(200)]
    Feed().batch(buf, [(u, True, P0) for u in uids])
    real = len(b",".join(member_bytes(u) for u in uids))
    assert buf.add_bytes == real + 1  # the estimate counts one comma per member
    assert len(member_bytes("")) + 1 == MEMBER_OVERHEAD


def test_has_full_body_per_action_not_in_total() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed().batch(buf, [("a1", True, P0), ("a2", True, P0), ("r1", False, P0)])
    two = 2 * member_size("a1")
    assert buf.has_full_body(two)
    assert not buf.has_full_body(two + 1)  # adds and removes never share a body
    assert buf.est_bytes > two + 1


# --- dropping lost partitions ---


def test_drop_partitions_returns_their_winners_and_keeps_the_rest() -> None:
    buf = CohortBuffer("c", 0.0)
    feed = Feed(P0, P1)
    feed.batch(buf, [("a", True, P0), ("b", True, P1), ("b", False, P1), ("c", False, P0)])
    winner = buf.entries["b"]
    assert winner.offset == 1  # P1 offsets 0, 1: the exit won
    assert buf.drop_partitions({P1}) == (1, winner.size)
    assert actions(buf) == (["a"], ["c"])
    assert (buf.add_bytes, buf.remove_bytes) == (member_size("a"), member_size("c"))
    assert buf.holds_any({P0}) and not buf.holds_any({P1})
    settle(list(buf.entries.values()))
    assert feed.tracker.commit_points([P0]) == {P0: 2}
    assert feed.tracker.commit_points([P1]) == {P1: 0}  # the dropped winner was never settled


def test_drop_partitions_of_untouched_partition_changes_nothing() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed().batch(buf, [("a", True, P0), ("a", False, P0)])
    before = dict(buf.entries)
    assert buf.drop_partitions({P1}) == (0, 0)
    assert buf.entries == before


# --- due policy ---


def cohort(cid: str, opened_at: float | None, *, busy: bool = False, uids: int = 1) -> Cohort:
    c = Cohort(cid)
    if opened_at is not None:
        c.open = CohortBuffer(cid, opened_at)
        Feed().batch(c.open, [(f"{cid}-{i}", True, P0) for i in range(uids)])
    c.busy = busy
    return c


def test_due_by_linger_sends_everything_when_not_scarce() -> None:
    c = cohort("a", 10.0)
    assert due(c, 10.999, wait(1.0), 10**6, scarce=False) is None
    assert due(c, 11.0, wait(1.0), 10**6, scarce=False) == Pick(c, Take.EVERYTHING)


def test_while_scarce_linger_does_not_make_a_partial_body_due() -> None:
    c = cohort("a", 10.0)
    assert due(c, 1e9, wait(1.0), 10**6, scarce=True) is None


def test_a_full_body_is_due_at_once_but_only_full_bodies_go() -> None:
    c = cohort("a", 10.0, uids=10)
    full = c.open.add_bytes if c.open else 0
    assert due(c, 10.0, wait(100.0), full, scarce=False) == Pick(c, Take.FULL_BODIES)
    assert due(c, 10.0, wait(100.0), full, scarce=True) == Pick(c, Take.FULL_BODIES)
    assert due(c, 10.0, wait(100.0), full + 1, scarce=True) is None
    # lingered and caught up: everything
    assert due(c, 200.0, wait(100.0), full, scarce=False) == Pick(c, Take.EVERYTHING)


def test_forced_cohort_sends_everything_whatever_the_linger_or_backlog() -> None:
    c = cohort("a", 10.0)
    c.forced = True
    assert due(c, 10.0, wait(100.0), 10**6, scarce=True) == Pick(c, Take.EVERYTHING)


def test_busy_or_empty_cohort_is_never_due() -> None:
    busy = cohort("a", 0.0, busy=True, uids=1000)
    busy.forced = True
    assert due(busy, 1e9, wait(0.0), 1, scarce=False) is None
    assert due(cohort("b", None), 1e9, wait(0.0), 1, scarce=False) is None


def wait(linger: float, max_hold: float = 1e12) -> Timing:
    return Timing(linger, max_hold)


def test_while_scarce_a_remainder_held_past_max_hold_goes_whole() -> None:
    """It holds back every commit of its partitions: a crash would replay the whole backlog."""
    c = cohort("a", 10.0)
    assert due(c, 69.999, wait(1.0, 60.0), 10**6, scarce=True) is None
    assert due(c, 70.0, wait(1.0, 60.0), 10**6, scarce=True) == Pick(c, Take.EVERYTHING)
    assert due(c, 11.0, wait(1.0, 60.0), 10**6, scarce=False) == Pick(c, Take.EVERYTHING)


def picked(pick: Pick | None) -> str | None:
    return pick.cohort.cohort_id if pick is not None else None


def test_pick_due_is_oldest_first_among_due() -> None:
    cohorts = [
        cohort("young", 9.5),
        cohort("old", 2.0),
        cohort("older-but-busy", 1.0, busy=True),
        cohort("not-due", 9.9),
        cohort("middle", 5.0),
        cohort("none", None),
    ]
    assert picked(pick_due(cohorts, 10.0, wait(0.5), 10**6, scarce=False)) == "old"
    cohorts[1].busy = True
    assert picked(pick_due(cohorts, 10.0, wait(0.5), 10**6, scarce=False)) == "middle"
    cohorts[4].open = None
    assert picked(pick_due(cohorts, 10.0, wait(0.5), 10**6, scarce=False)) == "young"
    cohorts[0].busy = True
    assert pick_due(cohorts, 10.0, wait(0.5), 10**6, scarce=False) is None


def test_pick_due_full_cohort_is_due_before_linger_but_older_due_goes_first() -> None:
    full = cohort("full", 9.99, uids=100)
    full_bytes = full.open.add_bytes if full.open else 0
    lingering = cohort("lingering", 1.0)
    fresh = cohort("fresh", 9.0)
    pick = pick_due([fresh, full], 10.0, wait(5.0), full_bytes, scarce=False)
    assert pick == Pick(full, Take.FULL_BODIES)
    three = [fresh, full, lingering]
    assert picked(pick_due(three, 10.0, wait(5.0), full_bytes, False)) == "lingering"
    # with a backlog the lingering partial one waits: the full one goes
    assert picked(pick_due(three, 10.0, wait(5.0), full_bytes, True)) == "full"


def test_pick_due_none_starves_under_repeated_picking() -> None:
    """Served oldest-first, every due cohort is picked before any cohort that opened later."""
    cohorts = [cohort(f"c{i}", float(i)) for i in (5, 3, 8, 1, 9, 2)]
    served = []
    while (pick := pick_due(cohorts, 100.0, wait(1.0), 10**6, scarce=False)) is not None:
        served.append(pick.cohort.cohort_id)
        pick.cohort.open = None  # sealed and handed to the sender
    assert served == ["c1", "c2", "c3", "c5", "c8", "c9"]


def test_pick_largest_is_the_idle_cohort_whose_larger_action_holds_most() -> None:
    cohorts = [cohort("small", 1.0, uids=3), cohort("big-busy", 1.0, uids=50, busy=True),
               cohort("big", 5.0, uids=20), cohort("none", None)]  # fmt: skip
    assert pick_largest(cohorts) == Pick(cohorts[2], Take.LARGER_ACTION)
    split = Cohort("split")  # 30 members in all, but 15 per action
    split.open = CohortBuffer("split", 0.0)
    Feed().batch(split.open, [(f"s-{i}", i % 2 == 0, P0) for i in range(30)])
    assert pick_largest([*cohorts, split]) == Pick(cohorts[2], Take.LARGER_ACTION)
    assert pick_largest([cohort("none", None)]) is None
