"""One API budget for the whole consumer group (issue 14, items 3 and 4), with real processes.

Real `cohort-streamer run` replicas on the session broker against a strict emulator, which
answers 429 to the 301st accepted request in any 60 s window, as MoEngage does. Every replica is
configured with the whole workspace budget; nothing else says how to split it.

The backlog is request-bound: 60 cohorts, and bodies capped at 4 KB, so requests, not bytes,
are the limit; it is produced only on the partitions one replica owns (found from the group's
description, by the replicas' client.id).
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streamer.dev.harness import StreamerProcess
from streamer.dev.sample import SampleLog, generate
from tests.fixtures.kafka import MakeTopic
from tests.fixtures.observe import metric, wait_for
from tests.fixtures.streamer import StreamerRig

BUDGET = 300
WINDOW_SECONDS = 60
PARTITIONS = 12
REPLICAS = 3
SESSION_TIMEOUT_MS = 6000
BACKLOG = {"events": 30_000, "cohorts": 60, "users": 200_000}


def _config(name: str) -> dict[str, Any]:
    return {
        "kafka": {
            "consumer": {
                "client.id": name,
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": 1000,
            }
        },
        "moengage": {
            "rate_limit_per_minute": BUDGET,
            "rate_window_seconds": WINDOW_SECONDS,
            "max_payload_bytes": 4096,
        },
        "batching": {"linger_ms": 500},
    }


def _strict(rig: StreamerRig) -> None:
    rig.emulator.configure(rate_limit_per_minute=BUDGET, rate_window_seconds=WINDOW_SECONDS)


def _produce_on(rig: StreamerRig, log: SampleLog, partitions: list[int]) -> None:
    """The log on these partitions only; one uid (the key) always lands on the same one."""
    producer = Producer({"bootstrap.servers": rig.bootstrap, "linger.ms": 20, "acks": "all"})
    for key, value in log.messages:
        partition = partitions[zlib.crc32(key) % len(partitions)]
        producer.produce(rig.topic, value, key, partition=partition)
        producer.poll(0)
    assert producer.flush(60) == 0


def _owned_by(rig: StreamerRig) -> dict[str, list[int]]:
    """client.id -> partitions, from the group's description."""
    admin = AdminClient({"bootstrap.servers": rig.bootstrap})
    group = admin.describe_consumer_groups([rig.group])[rig.group].result(timeout=20)
    return {
        m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
        for m in group.members
    }


def _share(proc: StreamerProcess) -> float:
    return metric(proc.metrics_port, "cohort_streamer_budget_share_per_minute")


def _start_group(rig: StreamerRig) -> dict[str, StreamerProcess]:
    """REPLICAS replicas, waited for until they own 4 partitions each and share evenly."""
    procs = {f"replica-{n}": rig.start(**_config(f"replica-{n}")) for n in range(REPLICAS)}

    def settled() -> bool:
        owned = _owned_by(rig)
        even = all(len(owned.get(name, [])) == PARTITIONS // REPLICAS for name in procs)
        members = [
            metric(p.metrics_port, "cohort_streamer_budget_group_members") for p in procs.values()
        ]
        shares = [_share(p) for p in procs.values()]
        return (
            even
            and members == [REPLICAS] * REPLICAS
            and len(set(shares)) == 1
            and shares[0] > BUDGET / 4
        )

    wait_for(settled, 60, "the group to settle with even shares", poll=0.5)
    return procs


def _drain_seconds(rig: StreamerRig, log: SampleLog, partitions: list[int]) -> float:
    started = time.monotonic()
    _produce_on(rig, log, partitions)
    rig.wait_caught_up(timeout=240)
    return time.monotonic() - started


def _rate_limited(rig: StreamerRig) -> int:
    return int(rig.emulator.stats()["by_status"].get("429", 0))


@pytest.mark.partitions(PARTITIONS)
def test_a_hot_replica_drains_its_backlog_within_1_25x_of_one_replica_alone(
    rig: StreamerRig, make_topic: MakeTopic
) -> None:
    """Alone, one replica drains the backlog with the whole budget; then, in a group of three
    idle replicas, the same backlog on one replica's partitions drains within 1.25x of that:
    the idle replicas' shares go to the hot one. 0 x 429 in either run; state exact."""
    _strict(rig)
    log = generate(**BACKLOG, seed=23)

    alone = dataclasses.replace(
        rig, topic=make_topic(PARTITIONS, "alone"), group=rig.group + "-alone"
    )
    single = alone.start(**_config("alone"))
    wait_for(
        lambda: metric(single.metrics_port, "cohort_streamer_assigned_partitions") == PARTITIONS,
        60,
        "the single replica's assignment",
    )
    wait_for(lambda: _share(single) == BUDGET, 30, "the single replica's whole budget")
    alone_seconds = _drain_seconds(alone, log, [0, 1, 2, 3])
    alone.assert_state(log.expected)
    assert single.terminate() == 0
    alone_429 = _rate_limited(rig)
    sent_alone = rig.emulator.stats()["requests_total"]

    rig.emulator.reset()
    procs = _start_group(rig)
    hot = _owned_by(rig)["replica-0"]
    group_seconds = _drain_seconds(rig, log, hot)
    rig.assert_state(log.expected)
    group_429 = _rate_limited(rig)
    sent_group = rig.emulator.stats()["requests_total"]
    ratio = group_seconds / alone_seconds
    print(
        f"alone {alone_seconds:.1f}s ({sent_alone} requests), hot replica of 3 "
        f"{group_seconds:.1f}s ({sent_group} requests): {ratio:.2f}x"
    )
    assert alone_429 == 0 and group_429 == 0, (alone_429, group_429)
    assert ratio <= 1.25, f"the hot replica took {ratio:.2f}x the single replica's time"
    assert alone_seconds > 30, f"the backlog took only {alone_seconds:.0f}s alone: not budget-bound"
    for proc in procs.values():
        assert proc.terminate() == 0


@pytest.mark.partitions(PARTITIONS)
def test_after_a_kill_9_the_survivors_take_the_whole_budget(rig: StreamerRig) -> None:
    """Kill -9 the hot replica mid-drain: once the group has dropped it (session timeout) and
    rebalanced, the survivors' shares reach 90% of the budget within one window; the backlog
    it left is drained, the state is exact, and no request was refused with 429."""
    _strict(rig)
    log = generate(**BACKLOG, seed=29)
    procs = _start_group(rig)
    hot = _owned_by(rig)["replica-0"]
    _produce_on(rig, log, hot)
    wait_for(lambda: _share(procs["replica-0"]) > BUDGET * 0.8, 30, "the hot replica's raise")
    time.sleep(3)
    assert rig.lag() > 0, "the backlog drained before the kill; make it larger"
    procs["replica-0"].kill()
    killed = time.monotonic()
    survivors = [procs["replica-1"], procs["replica-2"]]

    def full() -> bool:
        return sum(_share(p) for p in survivors) >= 0.9 * BUDGET

    limit = SESSION_TIMEOUT_MS / 1000 + WINDOW_SECONDS
    wait_for(full, limit, "the survivors' shares to reach 90% of the budget", poll=0.25)
    took = time.monotonic() - killed
    rig.wait_caught_up(timeout=180)
    rig.assert_state(log.expected)
    rate_limited = _rate_limited(rig)
    print(f"survivors at >= 90% of the budget {took:.1f}s after the kill; 429s: {rate_limited}")
    # the dead replica's rate stopped before the survivors' rose: no window over the budget
    assert rate_limited == 0
    for proc in survivors:
        assert proc.terminate() == 0
