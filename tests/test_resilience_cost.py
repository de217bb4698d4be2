"""Cost follows the work, and idle cohorts are freed (issue 13, item 5), on the real broker.

One event per distinct cohort id, API unlimited: once the log is drained the streamer tracks no
cohort (`cohort_streamer_cohorts_tracked` 0), holds nothing, and every cohort in the emulator is
exactly the log's state; a second wave, to new cohorts and to freed ones, ends the same way.
"""

from __future__ import annotations

import orjson

from streamer.dev.harness import StreamerProcess
from tests.fixtures.observe import http_get, wait_for
from tests.fixtures.streamer import StreamerRig

UNLIMITED = 10_000_000
TRACKED = "cohort_streamer_cohorts_tracked"
GAUGES = (TRACKED, "cohort_streamer_buffered_cohorts", "cohort_streamer_buffered_events")


def gauges(proc: StreamerProcess) -> dict[str, float]:
    """The values of GAUGES; a gauge missing from /metrics is an error, not 0."""
    assert proc.metrics_port is not None
    status, body = http_get(proc.metrics_port, "/metrics")
    assert status == 200
    values = {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in body.decode().splitlines())
        if name in GAUGES
    }
    assert set(values) == set(GAUGES), f"missing from /metrics: {set(GAUGES) - set(values)}"
    return values


def wave(cohorts: range, expected: dict[str, set[str]], tag: str) -> list[tuple[bytes, bytes]]:
    """One enter per cohort; every fifth cohort also loses its previous member (if any)."""
    messages = []
    for i in cohorts:
        cohort, uid = f"cohort-{i}", f"{tag}-{i}"
        members = expected.setdefault(cohort, set())
        if i % 5 == 0 and members:
            gone = members.pop()
            messages.append((gone.encode(), _event("exit", cohort, gone)))
        members.add(uid)
        messages.append((uid.encode(), _event("enter", cohort, uid)))
    return messages


def _event(action: str, cohort: str, uid: str) -> bytes:
    return orjson.dumps({"action": action, "cohort_id": cohort, "uid": uid})


def test_after_draining_distinct_cohorts_none_is_tracked_and_the_state_is_exact(
    rig: StreamerRig,
) -> None:
    rig.emulator.configure(rate_limit_per_minute=UNLIMITED)
    expected: dict[str, set[str]] = {}
    rig.produce(wave(range(2000), expected, "first"))
    proc = rig.start(
        moengage={"rate_limit_per_minute": UNLIMITED, "max_in_flight": 16},
        batching={"linger_ms": 100},
    )
    _assert_drained(rig, proc, expected, "2,000 new cohorts")
    rig.produce(wave(range(1500, 2500), expected, "second"))
    _assert_drained(rig, proc, expected, "a second wave, to 500 freed cohorts and 500 new ones")
    assert proc.terminate() == 0


def _assert_drained(
    rig: StreamerRig, proc: StreamerProcess, expected: dict[str, set[str]], what: str
) -> None:
    rig.wait_caught_up(timeout=120)
    try:
        wait_for(lambda: not any(gauges(proc).values()), 10, f"nothing held after {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {gauges(proc)}") from None
    rig.assert_state(expected)
