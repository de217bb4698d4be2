"""streamer/fastpath/src/store.rs: buffers hold events as Rust data, and must behave exactly like
the Python dicts they replaced (latest event per uid, insertion order, estimates, settlement),
through supersedes, flips between actions, seals, drops, requeues and compactions."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer._fastpath import MEMBER_OVERHEAD, Members
from streamer.batch import CohortBuffer, Entry
from streamer.offsets import PendingRange, TopicPartition

P0: TopicPartition = ("events", 0)
P1: TopicPartition = ("events", 1)


class Model:
    """The reference: one insertion-ordered dict per action, as CohortBuffer had."""

    def __init__(self) -> None:
        self.actions: dict[bool, dict[str, Entry]] = {True: {}, False: {}}

    def put(self, uid: str, entry: Entry) -> Entry | None:
        own, other = self.actions[entry.add], self.actions[not entry.add]
        old = own.get(uid)
        if old is None:
            old = other.pop(uid, None)
        own[uid] = entry  # an existing uid keeps its place, as dict assignment does
        return old

    def est(self, add: bool) -> int:
        return sum(len(uid) + MEMBER_OVERHEAD for uid in self.actions[add])


def entry(uid: str, add: bool, offset: int, rng: PendingRange, size: int, keyed: bool) -> Entry:
    value = (f'{{"uid":{uid!r},"n":{offset}}}' + "x" * size).encode()
    key = uid.encode() if keyed else None
    ts_ms = 1_700_000_000_000 + offset
    return Entry(add=add, value=value, key=key, offset=offset, ts_ms=ts_ms, range=rng)


def check(buf: CohortBuffer, model: Model) -> None:
    for add, held in ((True, buf.adds), (False, buf.removes)):
        assert held.add is add
        assert held.entries() == model.actions[add]  # order included: dicts compare equal...
        assert list(held.entries()) == list(model.actions[add])  # ...so also compare order
        assert held.est_bytes == model.est(add)
        assert len(held) == len(model.actions[add])
        for uid in model.actions[add]:
            assert uid in held


uids = st.sampled_from(["a", "b", "c", "ü", 'q"', "\\", "u" * 40, "v\n"])
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            uids,
            st.booleans(),
            st.integers(0, 3000),
            st.booleans(),
            st.sampled_from([P0, P1]),
        ),
        st.tuples(st.just("seal"), st.booleans(), st.sampled_from([0, 1, 2]), st.integers(40, 400)),
        st.tuples(st.just("drop"), st.sampled_from([P0, P1])),
        st.tuples(st.just("requeue"), st.sampled_from([frozenset(), frozenset({P1})])),
        st.tuples(st.just("settle")),
    ),
    max_size=120,
)


@given(steps)
@settings(max_examples=400, deadline=None)
def test_held_behaves_like_the_dicts_it_replaced(script: list[tuple[Any, ...]]) -> None:
    buf, model = CohortBuffer("c", 0.0), Model()
    ranges = {tp: PendingRange(tp, 0, 0, 0) for tp in (P0, P1)}
    unsettled: list[Members] = []
    offset = 0
    for step in script:
        if step[0] == "put":
            _, uid, add, size, keyed, tp = step
            offset += 1
            ranges[tp].pending += 1
            new = entry(uid, add, offset, ranges[tp], size, keyed)
            expected = model.put(uid, new)
            assert buf.put(uid, new) == expected
        elif step[0] == "seal":
            _, add, keep_last_from, max_bytes = step
            held = buf.adds if add else buf.removes
            bodies, refused = held.seal(b"[", b"]", max_bytes, keep_last_from)
            sealed = [m for _data, m in bodies] + ([refused] if refused is not None else [])
            for members in sealed:
                assert members.add is add
                for uid, sent in zip(members.uids(), members.entries(), strict=True):
                    assert model.actions[add].pop(uid) == sent
            unsettled += sealed
        elif step[0] == "drop":
            lost = {step[1]}
            dropped = [
                (u, e)
                for a in (True, False)
                for u, e in model.actions[a].items()
                if e.range.tp in lost
            ]
            for uid, e in dropped:
                del model.actions[e.add][uid]
                e.range.ack()  # dropped unsettled: the test's ledger forgets it too
            assert buf.drop_partitions(lost) == (len(dropped), sum(e.size for _u, e in dropped))
        elif step[0] == "requeue" and unsettled:
            members, released = unsettled.pop(), set(step[1])
            own, other = (buf.adds, buf.removes) if members.add else (buf.removes, buf.adds)
            gone = 0
            for uid, e in zip(members.uids(), members.entries(), strict=True):
                if e.range.tp in released:
                    gone += 1
                    e.range.ack()  # the ledger forgets what the new owner redelivers
                elif uid in model.actions[True] or uid in model.actions[False]:
                    gone += 1  # settled by requeue itself: a later event of this uid wins
                else:
                    model.actions[e.add][uid] = e
            assert members.requeue(own, other, released)[0] == gone
        elif step[0] == "settle" and unsettled:
            members = unsettled.pop(0)
            assert members.settle() == (len(members), members.value_bytes)
        check(buf, model)
    # every event put is settled, held, in a sealed body or forgotten: the ledger balances
    held = [e for a in (True, False) for e in model.actions[a].values()]
    in_flight = [e for m in unsettled for e in m.entries()]
    for tp, rng in ranges.items():
        assert rng.pending == sum(1 for e in held + in_flight if e.range.tp == tp)


def test_heavy_flapping_compacts_and_keeps_the_latest_of_each_uid() -> None:
    """20,000 flips of 50 uids leave megabytes of superseded bytes behind: the store compacts
    them away (many times) without losing or reordering a held event."""
    buf, model = CohortBuffer("c", 0.0), Model()
    rng = PendingRange(P0, 0, 0, 0)
    for n in range(20_000):
        uid = f"user-{n * 7 % 50}"
        new = entry(uid, n % 3 != 0, n, rng, 200, n % 2 == 0)
        rng.pending += 1
        assert buf.put(uid, new) == model.put(uid, new)
    check(buf, model)
    assert rng.pending == len(buf) == 50
    for held in (buf.adds, buf.removes):
        bodies, refused = held.seal(b"[", b"]", 10**6, 0)
        assert refused is None
        for _data, members in bodies:
            members.settle()
    assert rng.pending == 0 and len(buf) == 0
