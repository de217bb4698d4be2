"""Catch-up is recognised from the first fetch (issue 13, item 7), on the real broker.

A streamer that counts itself caught up before it knows how much waits in Kafka lets every
cohort's first linger expire, and pays one partial request per cohort and action out of the
budget. The fetches are made slow (the broker holds each fetch 0.7 s) or narrow (a fetch
carries a few partitions) on purpose, with librdkafka's own settings: the requests sent must
stay within 1.1x the fewest any streamer could send for that log.
"""

from __future__ import annotations

import math

import orjson
import pytest

from streamer.dev.sample import SampleLog, generate
from streamer.payload import Envelope
from tests.fixtures.bodies import pack_one_by_one
from tests.fixtures.streamer import StreamerRig

PARTNER = "tests"
MAX_PAYLOAD = 4096

# librdkafka consumer settings that make the first fetches slow and/or narrow
NARROW = {
    "fetch.max.bytes": 60_000,
    "message.max.bytes": 50_000,
    "max.partition.fetch.bytes": 20_000,
}
SLOW = {"fetch.min.bytes": 100_000_000, "fetch.wait.max.ms": 700}
# (slow and narrow together make the catch-up fetch-bound, not budget-bound: not this case)
SLOW_FIRST_FETCH_SETTINGS = {"narrow fetches": NARROW, "slow fetches": SLOW}


def fewest_requests(log: SampleLog) -> int:
    """The lower bound: per cohort and action, the bodies its final uids need when packed
    together (last write per cohort and uid wins, as the streamer coalesces), by the
    reference packer (tests/fixtures/bodies.py)."""
    last: dict[tuple[str, str], bool] = {}
    for _key, value in log.messages:
        event = orjson.loads(value)
        last[(event["cohort_id"], event["uid"])] = event["action"] == "enter"
    streams: dict[tuple[str, bool], list[str]] = {}
    for (cohort, uid), add in last.items():
        streams.setdefault((cohort, add), []).append(uid)
    total = 0
    for (cohort, add), uids in streams.items():
        action = "add_members" if add else "remove_members"
        envelope = Envelope(action, PARTNER, cohort, log.names[cohort], None)
        bodies, too_large = pack_one_by_one(envelope, sorted(uids), MAX_PAYLOAD)
        assert not too_large
        total += len(bodies)
    return total


@pytest.mark.partitions(12)
@pytest.mark.parametrize("fetch", list(SLOW_FIRST_FETCH_SETTINGS), ids=str)
def test_a_budget_bound_catch_up_sends_full_bodies_from_the_first_fetch(
    fetch: str, rig: StreamerRig
) -> None:
    log = generate(events=12_000, cohorts=6, users=4_000, seed=17)
    rig.produce(log.messages)
    bound = fewest_requests(log)
    proc = rig.start(
        kafka={"consume_batch_size": 1000, "consumer": SLOW_FIRST_FETCH_SETTINGS[fetch]},
        moengage={
            "max_payload_bytes": MAX_PAYLOAD,
            "rate_limit_per_minute": 10,
            "rate_window_seconds": 1,
        },
        batching={"linger_ms": 300},
    )
    rig.wait_caught_up(timeout=180)
    rig.assert_state(log.expected)
    sent = rig.emulator.stats()["requests_total"]
    assert sent <= math.floor(1.1 * bound), (
        f"{sent} requests for a lower bound of {bound} ({sent / bound:.2f}x, allowed 1.1x)"
    )
    assert proc.terminate() == 0
