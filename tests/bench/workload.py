"""Benchmark workloads: a large backlog generated fast, its expected state and request lower bound.

streamer.dev.sample builds one dict and one orjson.dumps per event, which is fine for tests but
takes half a minute for 2M events. Here the random draws are vectorised with numpy and each event
is a byte template filled with `%`; the last-write-wins state is still computed event by event (a
set of (cohort, user) integers), because flapping depends on whether the user is a member now.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Producer

from streamer.dev.sample import produce_one
from streamer.payload import Envelope
from tests.fixtures.bodies import pack_one_by_one

MAX_PAYLOAD_BYTES = 128_000


@dataclass
class Backlog:
    """Keyed messages in production order and what MoEngage must hold once they are applied."""

    keys: list[bytes]
    values: list[bytes]
    names: dict[str, str]
    expected: dict[str, set[str]]  # cohort -> members whose last event is enter
    removed: dict[str, set[str]] = field(default_factory=dict)  # last event is exit

    def __len__(self) -> int:
        return len(self.values)

    def messages(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        return zip(self.keys[start:stop], self.values[start:stop], strict=True)


def cohort_ids(cohorts: int) -> list[str]:
    return [f"cohort-{i:03d}" for i in range(cohorts)]


def generate_backlog(
    events: int, cohorts: int, users: int, seed: int = 7, exit_share: float = 0.35
) -> Backlog:
    """Zipf-like cohort sizes (weight 1/rank), uniform users, members flap in and out."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, cohorts + 1)
    chosen = rng.choice(cohorts, size=events, p=weights / weights.sum())
    who = rng.integers(0, users, size=events)
    pair = chosen.astype(np.int64) * users + who
    leave, final_pairs, final_member = _flap(pair, rng.random(events) < exit_share * 2)
    ids = cohort_ids(cohorts)
    names = {c: f"Cohort {c[-3:]} (bench)" for c in ids}
    uids = [b"user-%07d" % u for u in range(users)]
    ts = b'","ts":%d}' % int(time.time() * 1000)
    heads = [[_head(action, c, names[c]) for c in ids] for action in (b"enter", b"exit")]
    keys = [uids[u] for u in who.tolist()]
    values = [
        heads[out][c] + uid + ts
        for c, out, uid in zip(chosen.tolist(), leave.tolist(), keys, strict=True)
    ]
    text_uids = [uid.decode() for uid in uids]
    expected = _by_cohort(final_pairs[final_member], ids, text_uids)
    removed = _by_cohort(final_pairs[~final_member], ids, text_uids)
    return Backlog(keys, values, names, expected, removed)


def _flap(pair: np.ndarray, coin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which events are exits: a member leaves when its coin says so, anyone else enters.

    Returns (is_exit per event, distinct pairs, whether each pair is a member at the end). Most
    pairs occur once (an enter); only the events of repeated pairs are walked in Python.
    """
    order = np.argsort(pair, kind="stable")  # each pair's events together, in log order
    ranked = pair[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    sizes = np.diff(np.r_[starts, len(ranked)])
    leave = np.zeros(len(pair), dtype=bool)
    final_member = np.ones(len(starts), dtype=bool)
    flips = coin[order]
    for group in np.flatnonzero(sizes > 1).tolist():
        member = True  # the first event of a pair is always an enter
        first = int(starts[group])
        for i in range(first + 1, first + int(sizes[group])):
            if member and flips[i]:
                leave[order[i]] = True
                member = False
            else:
                member = True
        final_member[group] = member
    return leave, ranked[starts], final_member


def _head(action: bytes, cohort_id: str, name: str) -> bytes:
    return b'{"action":"%s","cohort_id":"%s","cohort_name":"%s","uid":"' % (
        action,
        cohort_id.encode(),
        name.encode(),
    )


def _by_cohort(pairs: np.ndarray, ids: list[str], uids: list[str]) -> dict[str, set[str]]:
    users = len(uids)
    cohort_of = pairs // users
    return {
        cohort: set(map(uids.__getitem__, (pairs[cohort_of == c] % users).tolist()))
        for c, cohort in enumerate(ids)
    }


def lower_bound(backlog: Backlog, partner: str) -> dict[str, Any]:
    """Fewest requests any streamer could send for this log: per cohort, ceil(net adds / members
    per 128,000-byte body) + the same for net removes. Members per body come from the reference
    packer (tests/fixtures/bodies.py, byte-equal to the streamer's) on this cohort's envelope and
    uid length (all bench uids are one length).
    """
    requests = 0
    capacities: set[int] = set()
    for cohort, adds in backlog.expected.items():
        for action, uids in (("add_members", adds), ("remove_members", backlog.removed[cohort])):
            if not uids:
                continue
            envelope = Envelope(action, partner, cohort, backlog.names[cohort], None)
            lengths = set(map(len, uids))
            assert len(lengths) == 1, "the bound assumes one uid length per cohort"
            capacity = members_per_body(envelope, lengths.pop())
            capacities.add(capacity)
            requests += math.ceil(len(uids) / capacity)
    return {
        "requests": requests,
        "net_adds": sum(len(v) for v in backlog.expected.values()),
        "net_removes": sum(len(v) for v in backlog.removed.values()),
        "members_per_full_body": sorted(capacities),
    }


def members_per_body(envelope: Envelope, uid_length: int) -> int:
    """How many uids of this length the reference packer puts into one full body."""
    probe = ["u" * uid_length] * (MAX_PAYLOAD_BYTES // uid_length + 1)
    bodies, _ = pack_one_by_one(envelope, probe, MAX_PAYLOAD_BYTES)
    _data, carried = bodies[0]
    return len(carried)


def producer(bootstrap: str, linger_ms: int = 50) -> Producer:
    """Like an upstream service: idempotent, acks=all, lz4; large local queue for bulk loads."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "acks": "all",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )


def produce(bootstrap: str, topic: str, messages: Iterator[tuple[bytes, bytes]]) -> int:
    """Write keyed messages in order (the key picks the partition); returns how many."""
    out = producer(bootstrap)
    count = 0
    for key, value in messages:
        produce_one(out, topic, key, value)
        count += 1
        if count % 10_000 == 0:
            out.poll(0)
    if out.flush(120):
        raise RuntimeError(f"not every message reached {topic}")
    return count
