"""Rebalances, crashes and broker restarts lose nothing (issue 5, items 5 and 6).

Every test runs the real `cohort-streamer run` processes against the session broker and the
emulator, with continuous traffic from a producer thread, and ends by checking the emulator's
membership against the log's last-write-wins state with the group's lag at 0.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from typing import Any

import orjson
import psutil
import pytest

from streamer.dev.devkafka import DevKafka
from streamer.dev.harness import StreamerProcess
from streamer.dev.sample import INVALID_SAMPLES, SampleLog, generate
from tests.fixtures.observe import http_get, metric, wait_for
from tests.fixtures.streamer import DeadLetter, StreamerRig

# a member that dies without leaving is noticed after the session timeout: keep it short
FAST_SESSION = {"consumer": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 500}}
# these tests are about Kafka, not the rate budget: a budget that never starves a revoke drain
API_BUDGET = 100_000
STREAMER_BUDGET = {"rate_limit_per_minute": 20_000}


def _owned(proc: StreamerProcess) -> float:
    return metric(proc.metrics_port, "cohort_streamer_assigned_partitions")


def _wait_owned(procs: list[StreamerProcess], what: str, timeout: float = 30) -> None:
    """Until every live member owns at least one partition and they own all 6 together."""

    def settled() -> bool:
        owned = [_owned(p) for p in procs]
        return all(n >= 1 for n in owned) and sum(owned) == 6

    wait_for(settled, timeout, what)


def _assert_converged(rig: StreamerRig, log: SampleLog, timeout: float = 120) -> None:
    rig.wait_caught_up(timeout=timeout)
    assert rig.lag() == 0
    rig.assert_state(log.expected)


def test_members_joining_and_leaving_under_traffic_converge(rig: StreamerRig) -> None:
    """Continuous traffic (40k events, 3k flapping users over 20 cohorts, for ~16 s) while the
    group changes: A alone, B joins, C joins, B is SIGTERMed (its partitions flushed and
    committed on revoke), D joins. Each change moves partitions whose users flap in and out,
    so a late request of an old owner would leave a wrong final membership.
    """
    rig.emulator.configure(latency_ms=20, rate_limit_per_minute=API_BUDGET)
    log = generate(events=40_000, cohorts=20, users=3_000, seed=41)
    traffic = rig.produce_in_background(log.messages, chunks=80, seconds=16)
    config: dict[str, Any] = {
        "kafka": FAST_SESSION,
        "moengage": STREAMER_BUDGET,
        "batching": {"linger_ms": 300},
    }

    a = rig.start(**config)
    wait_for(lambda: _owned(a) == 6, 30, "A to own every partition")
    time.sleep(1.0)
    b = rig.start(**config)
    _wait_owned([a, b], "A and B to share the partitions")
    time.sleep(1.0)
    c = rig.start(**config)
    _wait_owned([a, b, c], "A, B and C to share the partitions")
    time.sleep(1.0)
    assert b.terminate(timeout=30) == 0
    b_log = b.log_file.read_text()
    assert "stopped cleanly" in b_log and "deadline passed" not in b_log, b_log[-3000:]
    _wait_owned([a, c], "A and C to take over B's partitions")
    d = rig.start(**config)
    _wait_owned([a, c, d], "A, C and D to share the partitions")
    assert not traffic.done(), "traffic ended before D joined; slow the producer"
    traffic.join()

    _assert_converged(rig, log)
    revokes = metric(a.metrics_port, "cohort_streamer_rebalances_total", kind="revoke")
    assert revokes >= 2, "A never gave partitions away: the revoke path was not exercised"
    assert metric(a.metrics_port, "cohort_streamer_rebalances_total", kind="lost") == 0
    for proc in (a, c, d):
        assert proc.terminate(timeout=30) == 0
    a_log = a.log_file.read_text()
    # A flushed what it held of the partitions it gave away and committed them on release
    assert "revoked partition(s) before release" in a_log, a_log[-3000:]
    for proc in (a, b, c, d):
        text = proc.log_file.read_text()
        assert "deadline passed" not in text, text[-3000:]


def _keys_of(letters: list[DeadLetter]) -> set[bytes]:
    return {letter.key for letter in letters if letter.key is not None}


def _assert_every_invalid_event_dead_lettered(rig: StreamerRig, log: SampleLog) -> None:
    """Each invalid event has a unique key (bad-N): the DLQ must hold every one of them."""
    bad = {key: value for key, value in log.messages if key.startswith(b"bad-")}
    assert len(bad) == log.invalid > 0
    letters = rig.dead_letters(0, timeout=30, until=lambda got: _keys_of(got) >= bad.keys())
    missing = bad.keys() - _keys_of(letters)
    assert not missing, (
        f"{len(missing)} invalid events never reached the DLQ: {sorted(missing)[:5]}"
    )
    reason_of = dict(INVALID_SAMPLES)
    for letter in letters:
        assert letter.key in bad and letter.value == bad[letter.key], letter
        assert letter.headers["reason"] == reason_of[letter.value], letter


def test_kill_9_at_random_moments_loses_nothing(rig: StreamerRig) -> None:
    """SIGKILL the streamer 4 times at seeded random moments while traffic flows and the API
    fails (20% 500, 5% 429, 25 ms latency), restarting it each time. At-least-once: the final
    membership equals the log's, the lag is 0, and every invalid event is in the DLQ at least
    once (a kill between a DLQ write and its commit may duplicate it, never lose it).
    """
    rng = random.Random(66)
    rig.emulator.configure(
        fail_5xx_ratio=0.2,
        fail_429_ratio=0.05,
        latency_ms=25,
        seed=6,
        rate_limit_per_minute=API_BUDGET,
    )
    log = generate(events=30_000, cohorts=12, users=2_000, seed=61, invalid_every=101)
    config: dict[str, Any] = {
        "kafka": FAST_SESSION,
        "moengage": {"rate_limit_per_minute": 120, "rate_window_seconds": 2},
    }
    traffic = rig.produce_in_background(log.messages, chunks=80, seconds=20)
    proc = rig.start(**config)
    for _ in range(4):
        _wait_owned([proc], "the streamer to own every partition")
        time.sleep(rng.uniform(0.3, 2.0))
        assert not traffic.done(), "traffic ended before this kill; slow the producer"
        assert proc.alive(), proc.log_tail()
        proc.kill()
        proc = rig.start(**config)
    traffic.join()

    _assert_converged(rig, log, timeout=180)
    _assert_every_invalid_event_dead_lettered(rig, log)
    stats = rig.emulator.stats()
    assert stats["injected"].get("500", 0) > 0, stats["injected"]
    assert proc.terminate(timeout=30) == 0


def test_a_broker_restart_mid_run_converges(rig: StreamerRig, kafka_broker: DevKafka) -> None:
    """The broker restarts (clean stop, start on the same data) while traffic flows and the
    streamer holds unacknowledged changes: it rides it out (no exit), then converges, every
    invalid event reaches the DLQ, and /readyz is green again.
    """
    rig.emulator.configure(latency_ms=20, rate_limit_per_minute=API_BUDGET)
    log = generate(events=20_000, cohorts=10, users=2_000, seed=71, invalid_every=97)
    rig.produce(log.messages[:5_000])
    proc = rig.start(moengage=STREAMER_BUDGET)
    port = proc.metrics_port
    assert port is not None
    wait_for(lambda: metric(port, "cohort_streamer_commits_total") >= 1, 30, "a first commit")
    traffic = rig.produce_in_background(log.messages[5_000:], chunks=30, seconds=8)
    time.sleep(1.5)

    kafka_broker.restart()
    assert proc.alive(), proc.log_tail()
    traffic.join(timeout=180)

    _assert_converged(rig, log, timeout=180)
    _assert_every_invalid_event_dead_lettered(rig, log)
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 30, "/readyz after the restart")
    body = orjson.loads(http_get(port, "/readyz")[1])
    assert body["status"] == "ok", body
    assert proc.terminate(timeout=30) == 0


def _group_readers(proc: StreamerProcess) -> list[psutil.Process]:
    """The streamer's live child processes that read the group (streamer.groupfetch)."""
    readers = []
    for child in psutil.Process(proc.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):  # a zombie: dead, not yet reaped
            if "streamer.groupfetch" in child.cmdline():
                readers.append(child)
    return readers


@pytest.mark.parametrize("crash", [signal.SIGABRT, signal.SIGKILL])
def test_the_group_reader_crashing_never_ends_the_streamer(
    rig: StreamerRig, crash: signal.Signals
) -> None:
    """librdkafka aborts the process of an admin client whose coordinator connection drops
    mid-request (#4605): that process is the group reader's child, never the streamer. Killed
    by either signal, the child is replaced at the next read, the events keep flowing and
    converge, and a clean stop leaves no child behind."""
    rig.emulator.configure(latency_ms=20, rate_limit_per_minute=API_BUDGET)
    log = generate(events=10_000, cohorts=8, users=1_000, seed=83)
    rig.produce(log.messages[:3_000])
    proc = rig.start(moengage=STREAMER_BUDGET)
    port = proc.metrics_port
    assert port is not None
    wait_for(lambda: len(_group_readers(proc)) == 1, 30, "the group reader's child")
    first = _group_readers(proc)[0]
    first.send_signal(crash)
    traffic = rig.produce_in_background(log.messages[3_000:], chunks=10, seconds=4)

    wait_for(
        lambda: [c.pid for c in _group_readers(proc)] not in ([], [first.pid]),
        30,
        "a new group reader child",
    )
    traffic.join(timeout=60)
    _assert_converged(rig, log)
    assert proc.alive(), proc.log_tail()
    assert metric(port, "cohort_streamer_budget_poll_failures_total") >= 1
    assert "streamer.groupfetch ended" in proc.log_tail(200)
    wait_for(lambda: len(_group_readers(proc)) == 1, 30, "the group reader's child")
    second = _group_readers(proc)[0]
    assert proc.terminate(timeout=30) == 0
    with contextlib.suppress(psutil.NoSuchProcess):
        assert second.status() == psutil.STATUS_ZOMBIE, "a group reader outlived the streamer"
