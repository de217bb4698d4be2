"""streamer/seal.py: what a delivery takes from a buffer, and what a partial seal leaves."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.batch import CohortBuffer, Take
from streamer.seal import Shipment, seal
from tests.fixtures.bodies import member_bytes
from tests.fixtures.buffers import P0, P1, Feed, actions, settle

PARTNER = "cohort-streamer"


def filled(adds: int, removes: int = 0, feed: Feed | None = None) -> CohortBuffer:
    buf = CohortBuffer("c", 0.0)
    events = [(f"user-{i:06d}", True, P0) for i in range(adds)]
    events += [(f"gone-{i:06d}", False, P0) for i in range(removes)]
    (feed or Feed()).batch(buf, events)
    return buf


def sent_uids(shipment: Shipment) -> list[str]:
    return [uid for parcel in shipment.parcels for uid in parcel.members.uids()]


def check_aligned(shipment: Shipment) -> None:
    """Each parcel carries exactly the winning entries of its body's uids, in body order."""
    for parcel in shipment.parcels:
        body_uids = [m["uid"] for m in orjson.loads(parcel.data)["parameters"]["members"]]
        assert body_uids == parcel.members.uids()
        entries = parcel.members.entries()
        assert len(entries) == len(body_uids) == len(parcel.members)
        for uid, entry in zip(body_uids, entries, strict=True):
            assert f'"uid":"{uid}"'.encode() in entry.value
            assert entry.add is parcel.members.add


def test_everything_takes_all_and_empties_the_buffer() -> None:
    buf = filled(3000, 200)
    held = dict(buf.entries)
    shipment = seal(buf, PARTNER, 20_000, Take.EVERYTHING)
    assert sorted(sent_uids(shipment)) == sorted(held)
    assert buf.entries == {} and buf.est_bytes == 0
    assert [p.envelope.action for p in shipment.parcels][-1] == "remove_members"
    assert all(len(p.data) <= 20_000 for p in shipment.parcels)
    check_aligned(shipment)


def test_full_only_sends_full_bodies_and_keeps_each_actions_remainder() -> None:
    buf = filled(3000, 200)  # adds fill several 20 kB bodies; removes fill none
    held = dict(buf.entries)
    shipment = seal(buf, PARTNER, 20_000, Take.FULL_BODIES)
    assert shipment.parcels
    assert {p.envelope.action for p in shipment.parcels} == {"add_members"}
    longest = max(len(member_bytes(u)) for u in held)
    for parcel in shipment.parcels:  # full: another member would not have fitted
        assert 20_000 - longest - 1 < len(parcel.data) <= 20_000
    kept_adds, kept_removes = actions(buf)
    assert len(kept_removes) == 200
    assert 0 < len(kept_adds) < 3000
    assert sorted(sent_uids(shipment) + list(buf.entries)) == sorted(held)
    assert buf.add_bytes == sum(len(u) + 11 for u in kept_adds)
    check_aligned(shipment)


def test_full_only_with_no_full_body_sends_nothing_and_keeps_all() -> None:
    buf = filled(100, 100)
    held = dict(buf.entries)
    shipment = seal(buf, PARTNER, 128_000, Take.FULL_BODIES)
    assert shipment.parcels == [] and shipment.too_large == []
    assert buf.entries == held


def test_settling_a_partial_seal_commits_only_up_to_the_oldest_kept_event() -> None:
    feed = Feed(P0, P1)
    buf = CohortBuffer("c", 0.0)
    feed.batch(buf, [("kept-early", False, P1)])  # P1 offset 0: stays (no full remove body)
    feed.batch(buf, [(f"user-{i:06d}", True, P0) for i in range(3000)])
    shipment = seal(buf, PARTNER, 20_000, Take.FULL_BODIES)
    for parcel in shipment.parcels:
        assert parcel.members.settle() == (len(parcel.members), parcel.members.value_bytes)
    marks = feed.watermarks()
    assert marks.get(P1, 0) == 0  # the kept remove holds its partition
    assert marks[P0] == 0  # the kept add remainder is in P0's only range
    settle(list(buf.entries.values()))
    assert feed.watermarks() == {P0: 3000, P1: 1}


def test_larger_action_sends_all_of_it_and_keeps_the_other() -> None:
    buf = filled(300, 500)
    shipment = seal(buf, PARTNER, 128_000, Take.LARGER_ACTION)
    assert {p.envelope.action for p in shipment.parcels} == {"remove_members"}
    assert len(sent_uids(shipment)) == 500
    assert actions(buf) == ([f"user-{i:06d}" for i in range(300)], [])


def test_larger_action_just_over_one_body_keeps_the_few_members_past_it() -> None:
    buf = filled(1500)  # 1500 * 22 bytes: one 32,000-byte body and a few members more
    shipment = seal(buf, PARTNER, 32_000, Take.LARGER_ACTION)
    assert len(shipment.parcels) == 1
    assert 0 < len(buf.entries) < 100


def test_a_uid_too_large_for_any_body_is_set_aside_and_the_rest_still_sent() -> None:
    buf = CohortBuffer("c", 0.0)
    Feed().batch(buf, [("a", True, P0), ("x" * 3000, True, P0), ("b", True, P0)])
    shipment = seal(buf, PARTNER, 2000, Take.EVERYTHING)
    [refused] = shipment.too_large
    assert refused.uids() == ["x" * 3000] and [e.offset for e in refused.entries()] == [1]
    assert sent_uids(shipment) == ["a", "b"]
    check_aligned(shipment)


@given(
    st.lists(st.tuples(st.integers(0, 400), st.booleans()), max_size=600),
    st.integers(min_value=600, max_value=6000),
    st.sampled_from(Take),
)
@settings(max_examples=150, deadline=None)
def test_seal_property(events: list[tuple[int, bool]], max_bytes: int, take: Take) -> None:
    """Every held uid is either sent once or kept; only the kept events stay unsettled."""
    feed = Feed()
    buf = CohortBuffer("c", 0.0)
    feed.batch(buf, [(f"u{n}", add, P0) for n, add in events])
    held = {uid: entry.add for uid, entry in buf.entries.items()}
    larger_is_add = buf.add_bytes >= buf.remove_bytes
    shipment = seal(buf, PARTNER, max_bytes, take)
    sent = sent_uids(shipment)
    assert len(sent) == len(set(sent))
    assert sorted(sent + list(buf.entries)) == sorted(held)
    if take is Take.EVERYTHING:
        assert buf.entries == {}
    if take is Take.LARGER_ACTION:  # only the larger action goes
        assert all(held[uid] is larger_is_add for uid in sent)
    for parcel in shipment.parcels:
        assert len(parcel.data) <= max_bytes
        assert all(held[uid] is parcel.members.add for uid in parcel.members.uids())
        assert parcel.members.add is (parcel.envelope.action == "add_members")
    check_aligned(shipment)
    for parcel in shipment.parcels:
        parcel.members.settle()
    assert feed.tracker.pending_events() == len(buf.entries)
