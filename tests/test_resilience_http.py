"""A hostile HTTP world loses nothing (issue 13, items 1 and 4), on the real broker.

The streamer talks to a misbehaving server (tests/fixtures/hostile_api.py) in front of the
emulator:
- redirects: any 3xx, to the same host or another, is a configuration fault: nothing is
  committed, consumption pauses, /readyz names the Location, the other host is never contacted
  (so it never sees a credential); once the API answers 2xx again everything lands;
- huge answers: 200 and 500 answers of many megabytes leave the streamer's memory bounded.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streamer.dev.sample import generate
from tests.fixtures.hostile_api import Answer, Forward, MakeHostileApi, Received
from tests.fixtures.observe import http_get, metric, wait_for
from tests.fixtures.streamer import StreamerRig

RETRIES = "cohort_streamer_retries_total"
REDIRECTING = "cohort_streamer_endpoint_misconfigured"
COHORT_SYNC_PATH = "/v1/integrations/cohortsync"
# a page that answers 200 to anything: what a followed redirect used to count as accepted
LANDING = Answer(200, {"Content-Type": "application/json"}, b'{"status": "success"}')
MIB = 2**20


def _readyz(port: int) -> tuple[int, str]:
    status, body = http_get(port, "/readyz")
    return status, orjson.loads(body)["reason"] if body else ""


# --- redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "where"),
    [
        (302, "same"),
        (302, "other"),
        (301, "same"),
        (303, "other"),
        (307, "same"),
        (307, "other"),
        (308, "other"),
        (300, "same"),
        (304, "other"),
        (399, "same"),
        # not a redirect, but as surely not the API (a path under base_url, a proxy's route)
        (404, "none"),
        (405, "none"),
        (421, "none"),
    ],
)
def test_a_redirecting_api_pauses_without_commit_then_heals(
    rig: StreamerRig, hostile_api: MakeHostileApi, status: int, where: str
) -> None:
    """Every Cohort Sync POST is answered `status` with a Location on this host or another one,
    and that Location answers 200 to anything. Nothing may be committed or reach the emulator;
    the other host is never contacted; /readyz fails naming the Location and the config keys;
    consumption pauses; retries are slow (auth_retry_seconds). When the API stops redirecting,
    the log lands exactly and the streamer is ready again, by itself.
    """
    api = hostile_api(upstream=rig.emulator.url)
    elsewhere = hostile_api()
    elsewhere.answer(LANDING)
    location = {"same": "/landing", "other": f"{elsewhere.url}/landing", "none": ""}[where]
    headers = {"Location": location} if location else {}

    def redirect(request: Received) -> Answer:
        if request.path == "/landing":
            return LANDING
        return Answer(status, {**headers, "Content-Type": "text/html"}, b"moved")

    api.answer(redirect)
    log = generate(events=600, cohorts=4, users=150, seed=131)
    rig.produce(log.messages)
    proc = rig.start(moengage={"base_url": api.url, "auth_retry_seconds": 1})
    port = proc.metrics_port
    assert port is not None

    wait_for(lambda: len(api.received) >= 4, 20, "Cohort Sync requests")
    time.sleep(1.0)  # five commit intervals
    assert rig.lag() == len(log.messages), "offsets were committed while the API redirected"
    assert not any(rig.emulator.members(c) for c in log.expected)
    assert [r.path for r in api.received if r.path != COHORT_SYNC_PATH] == []
    assert elsewhere.received == [], "a redirect was followed to another host"

    def not_ready_naming_the_location() -> bool:
        code, reason = _readyz(port)
        named = f"HTTP {status}" in reason and location in reason
        return code == 503 and named and "moengage.base_url" in reason

    wait_for(not_ready_naming_the_location, 10, "/readyz to fail naming the Location")
    wait_for(lambda: metric(port, REDIRECTING) == 1, 10, "the redirecting gauge")
    wait_for(lambda: metric(port, "cohort_streamer_paused_partitions") == 6, 10, "pausing")
    wait_for(lambda: metric(port, RETRIES, cause="wrong_endpoint") >= 2, 10, "slow retries")
    status_class = f"{status // 100}xx"
    assert metric(port, "cohort_streamer_requests_total", status_class=status_class) >= 2
    posts = len(api.received)
    time.sleep(2.0)  # ten commit intervals, two retry periods
    assert rig.lag() == len(log.messages), "offsets were committed while the API redirected"
    # slow retries: each of at most 8 (cohort, action) streams sends about once per second, so
    # at most 3 each in 2 s (24; twice that for scheduling at the window's edges), where the
    # fast cadence (retry_initial_seconds 0.05) would send hundreds
    assert len(api.received) - posts <= 2 * 8 * 3, "redirects are retried at the fast cadence"
    assert elsewhere.received == [], "a redirect was followed to another host"

    api.answer(Forward())
    rig.wait_caught_up(timeout=60)
    rig.assert_state(log.expected)
    wait_for(lambda: _readyz(port)[0] == 200, 10, "/readyz to recover")
    assert metric(port, REDIRECTING) == 0
    assert elsewhere.received == []
    assert proc.terminate() == 0


def test_credentials_in_a_location_never_reach_logs_or_readyz(
    rig: StreamerRig, hostile_api: MakeHostileApi
) -> None:
    """A Location that echoes the API key (in userinfo, path and query) and control characters:
    /readyz and the log show the Location without any of it, cut to a bounded length."""
    key = rig.emulator.api_key
    location = f"https://user:{key}@elsewhere.example/{key}/x?key={key}&pad={'p' * 5000}\x1b[2J"
    api = hostile_api(upstream=rig.emulator.url)
    api.answer(Answer(302, {"Location": location}))
    rig.produce(generate(events=50, cohorts=2, users=20, seed=132).messages)
    proc = rig.start(
        moengage={"base_url": api.url, "auth_retry_seconds": 1},
        deadlines={"shutdown_flush_seconds": 1},  # it stops while still redirected
    )
    port = proc.metrics_port
    assert port is not None
    wait_for(lambda: _readyz(port)[0] == 503, 20, "/readyz to fail")
    wait_for(lambda: metric(port, RETRIES, cause="wrong_endpoint") >= 1, 10, "a redirect retry")
    reason = _readyz(port)[1]
    assert "elsewhere.example" in reason
    assert key not in reason and "\x1b" not in reason and len(reason) < 600
    assert proc.terminate() == 0
    output = proc.log_file.read_text()
    assert "elsewhere.example" in output
    assert key not in output and "\x1b" not in output


# --- huge answers -----------------------------------------------------------------------------


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM): no sampling can miss a spike."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


# Measured with the cap: peak RSS grows by 0-3 MiB over the idle process in every case below.
# Without it, 8 requests in flight each reading 20 or 50 MB grow it by hundreds of MiB.
MAX_GROWTH_MIB = 24


@pytest.mark.parametrize(
    ("status", "size"),
    [(200, 1 * MIB), (200, 20 * MIB), (200, 50 * MIB), (500, 1 * MIB), (500, 50 * MIB)],
)
def test_huge_answers_keep_memory_bounded_and_the_data_lands(
    rig: StreamerRig, hostile_api: MakeHostileApi, status: int, size: int
) -> None:
    """Every answer is `size` bytes: for 200 the emulator applied the change and its answer is
    padded; for 500 the first 1.5 s of requests fail with a `size`-byte error page (and are
    retried), then padded 200s follow. 8 cohorts, up to 8 requests in flight. The streamer's
    peak RSS may grow at most MAX_GROWTH_MIB over its idle peak, and the log lands exactly.
    """
    api = hostile_api(upstream=rig.emulator.url)
    failing_until = 0.0  # set when the events are produced

    def huge(_request: Received) -> Answer | Forward:
        if time.monotonic() < failing_until:
            return Answer(500, {"Content-Type": "text/html"}, b"<html>", pad_to=size)
        return Forward(pad_to=size)

    log = generate(events=1_500, cohorts=8, users=300, seed=133)
    proc = rig.start(moengage={"base_url": api.url, "max_in_flight": 8})
    port = proc.metrics_port
    assert port is not None
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 30, "the idle streamer to be ready")
    idle = _peak_rss_mib(proc.pid)

    api.answer(huge)
    failing_until = time.monotonic() + 1.5 if status == 500 else 0.0
    rig.produce(log.messages)
    rig.wait_caught_up(timeout=60)
    rig.assert_state(log.expected)
    growth = _peak_rss_mib(proc.pid) - idle
    assert growth < MAX_GROWTH_MIB, f"peak RSS grew {growth:.0f} MiB reading {size}-byte answers"
    if status == 500:
        assert metric(port, RETRIES, cause="server_error") >= 1
    assert proc.terminate() == 0
