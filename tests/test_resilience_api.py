"""API faults lose nothing (issue 5, items 1-3), on the real broker and the emulator.

- retry classes: 5xx, 429 (injected, and real ones with Retry-After), client timeouts;
- partial rejection: 400 bisection to the refused uids, 413 splitting;
- credentials: 401/403 pause without committing, and heal by themselves (incl. a *_FILE secret).
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streamer.dev.harness import StreamerProcess
from streamer.dev.sample import SampleLog, generate
from tests.fixtures.observe import Sampler, http_get, metric, wait_for
from tests.fixtures.streamer import StreamerRig

RETRIES = "cohort_streamer_retries_total"
SHARE_GAUGE = "cohort_streamer_budget_share_per_minute"


def _no_dead_letters(rig: StreamerRig) -> None:
    letters = rig.dead_letters(0, timeout=1)
    assert not letters, f"{len(letters)} unexpected dead letters, e.g. {letters[0]}"


def _wait_whole_budget(proc: StreamerProcess, budget: int) -> None:
    """A replica starts at the group's floor until it finds itself in the group (about a
    second); alone, it then holds the whole budget. Events come after that, so the share's
    samples show what 429s do, not the start."""
    wait_for(lambda: metric(proc.metrics_port, SHARE_GAUGE) == budget, 30, "the whole budget")


# --- 1. retry classes -------------------------------------------------------------------------


def test_5xx_and_429_are_retried_until_the_log_converges(rig: StreamerRig) -> None:
    """Half the calls fail with 500 and a fifth with 429 (seeded), every answer 30 ms late.

    Every injected failure must come back as exactly one retry of the matching cause (none is
    dropped, none double-counted), the 429s must slow the pacing, and the final
    membership must be the log's last-write-wins state with nothing dead-lettered.
    """
    rig.emulator.configure(fail_5xx_ratio=0.5, fail_429_ratio=0.2, latency_ms=30, seed=1234)
    log = generate(events=5_000, cohorts=8, users=1_000, seed=21)
    budget = 120
    proc = rig.start(moengage={"rate_limit_per_minute": budget, "rate_window_seconds": 2})
    _wait_whole_budget(proc, budget)
    rig.produce(log.messages)
    with Sampler(lambda: metric(proc.metrics_port, SHARE_GAUGE), 0.1) as rate:
        rig.wait_caught_up(timeout=120)
    rig.assert_state(log.expected)

    stats = rig.emulator.stats()
    injected = stats["injected"]
    assert injected.get("500", 0) >= 10 and injected.get("429", 0) >= 3, injected
    port = proc.metrics_port
    assert metric(port, RETRIES, cause="server_error") == stats["by_status"]["500"]
    assert metric(port, RETRIES, cause="rate_limited") == stats["by_status"]["429"]
    assert metric(port, RETRIES, cause="timeout") == 0
    assert rate.low < budget, f"the rate never went down after 429s (samples {rate.values[:20]})"
    assert rate.low >= budget / 2, f"429s collapsed the rate (samples {rate.values[:20]})"
    _no_dead_letters(rig)
    assert proc.terminate() == 0


def test_retry_after_is_honoured_and_the_rate_backs_off(rig: StreamerRig) -> None:
    """The API allows 5 requests per 2 s and answers 429 with Retry-After; we start at 60.

    One request at a time (max_in_flight 1), so the emulator's arrival log is the streamer's
    send sequence: after every rate-limited arrival, the next one must come no earlier than the
    Retry-After the emulator sent (recomputed from its accepted-request log). The paced share
    must drop below the configured budget but never below half of it (a 429 storm must not
    collapse the rate), and the log still converges.
    """
    window, allowed = 2.0, 5
    rig.emulator.configure(rate_limit_per_minute=allowed, rate_window_seconds=window)
    log = generate(events=3_000, cohorts=12, users=800, seed=22)
    budget = 60
    proc = rig.start(
        moengage={
            "rate_limit_per_minute": budget,
            "rate_window_seconds": window,
            "max_in_flight": 1,
        },
        batching={"linger_ms": 50},
    )
    _wait_whole_budget(proc, budget)
    rig.produce(log.messages)
    with Sampler(lambda: metric(proc.metrics_port, SHARE_GAUGE), 0.1) as rate:
        rig.wait_caught_up(timeout=120)
    rig.assert_state(log.expected)
    assert budget / 2 <= rate.low < budget, f"pacing after 429s (samples {rate.values[:20]})"

    stats = rig.emulator.stats(timestamps=True)
    arrivals: list[float] = stats["arrival_times"]
    accepted: list[float] = stats["accepted_times"]
    limited = stats["by_status"].get("429", 0)
    assert limited >= 2, stats["by_status"]
    assert set(stats["by_status"]) == {"200", "429"}, stats["by_status"]
    assert metric(proc.metrics_port, RETRIES, cause="rate_limited") == limited

    # which arrivals were accepted: requests are sequential, so an acceptance belongs to the
    # last arrival at or before it
    accepted_set = set()
    j = 0
    for i, arrival in enumerate(arrivals):
        following = arrivals[i + 1] if i + 1 < len(arrivals) else float("inf")
        while j < len(accepted) and accepted[j] < arrival:
            j += 1
        if j < len(accepted) and accepted[j] < following:
            accepted_set.add(i)
    rejected = [i for i in range(len(arrivals)) if i not in accepted_set]
    assert len(rejected) == limited
    early = []
    for i in rejected:
        if i + 1 == len(arrivals):
            continue
        in_window = [t for t in accepted if arrivals[i] - window < t <= arrivals[i]]
        # the emulator's Retry-After: whole seconds until the oldest of them leaves the window
        slot_free = in_window[-allowed] + window - arrivals[i] if len(in_window) >= allowed else 0
        retry_after = max(1, -(-slot_free // 1))
        gap = arrivals[i + 1] - arrivals[i]
        if gap < retry_after - 0.05:
            early.append((i, round(gap, 3), retry_after))
    assert not early, f"sent again before Retry-After (arrival, gap, retry_after): {early}"
    assert proc.terminate() == 0


def test_timeouts_with_unknown_outcome_are_retried_and_nothing_commits_meanwhile(
    rig: StreamerRig,
) -> None:
    """Answers slower than `moengage.timeout_seconds` (the change IS applied, the client cannot
    know): nothing may be committed while every call times out; then latency returns to
    normal and the retries (idempotent) converge to the log's state.
    """
    log = generate(events=3_000, cohorts=6, users=600, seed=23)
    rig.emulator.configure(latency_ms=1_500)
    rig.produce(log.messages)
    proc = rig.start(moengage={"timeout_seconds": 0.5})
    port = proc.metrics_port
    wait_for(lambda: metric(port, RETRIES, cause="timeout") >= 6, 30, "timeouts")
    # the API applied some of the changes, yet no offset moved: the outcome was unknown
    assert rig.emulator.stats()["memberships_changed"] > 0
    time.sleep(0.5)  # several commit intervals
    assert rig.lag() == len(log.messages)

    rig.emulator.configure(latency_ms=0)
    rig.wait_caught_up()
    rig.assert_state(log.expected)
    assert metric(port, "cohort_streamer_requests_total", status_class="timeout") >= 6
    _no_dead_letters(rig)
    assert proc.terminate() == 0


# --- 2. partial rejection ---------------------------------------------------------------------


def _last_events(log: SampleLog, uids: set[str]) -> dict[tuple[str, str], bytes]:
    """(cohort, uid) -> the bytes of the last (winning) event of that pair in the log."""
    last: dict[tuple[str, str], bytes] = {}
    for _key, value in log.messages:
        event = orjson.loads(value)
        if isinstance(event, dict) and event.get("uid") in uids:
            last[(event["cohort_id"], event["uid"])] = value
    return last


def test_refused_uids_are_dead_lettered_alone_and_the_rest_is_delivered(
    rig: StreamerRig,
) -> None:
    """Three uids the API refuses with 400: bisection isolates them; only their winning events
    go to the DLQ (reason rejected_by_api, the API's message in detail, original bytes); every
    other member is delivered and the lag reaches 0.
    """
    log = generate(events=6_000, cohorts=6, users=1_500, seed=24)
    biggest = max(log.expected, key=lambda c: len(log.expected[c]))
    refused = set(sorted(log.expected[biggest])[:3])
    rig.emulator.configure(refuse_uids=refused)
    rig.produce(log.messages)
    proc = rig.start()
    rig.wait_caught_up()

    rig.assert_state({c: members - refused for c, members in log.expected.items()})
    winners = _last_events(log, refused)
    letters = rig.dead_letters(len(winners))
    assert letters, "nothing was dead-lettered"
    all_values = {value for _key, value in log.messages}
    for letter in letters:
        assert letter.headers["reason"] == "rejected_by_api", letter
        assert letter.key is not None and letter.key.decode() in refused, letter
        uid = letter.key.decode()
        assert f"uid {uid} can not be processed" in letter.headers["detail"], letter
        assert letter.value in all_values, "the dead letter is not the original event's bytes"
        assert orjson.loads(letter.value or b"")["uid"] == uid
    # every (cohort, uid) pair's final word reached the DLQ (earlier flushes may add more)
    assert set(winners.values()) <= {letter.value for letter in letters}
    stats = rig.emulator.stats()
    assert stats["by_status"].get("400", 0) >= len(winners)
    port = proc.metrics_port
    assert metric(port, "cohort_streamer_dlq_writes_total", reason="rejected_by_api") == len(
        letters
    )
    assert proc.terminate() == 0


def test_413_splits_requests_until_they_fit(rig: StreamerRig) -> None:
    """The API accepts 20 000 bytes while the streamer fills 128 000-byte requests: every 413
    is split and retried, all members land, nothing is dead-lettered, no body over the limit
    was accepted.
    """
    limit = 20_000
    rig.emulator.configure(max_payload_bytes=limit)
    log = generate(events=15_000, cohorts=3, users=6_000, seed=25)
    assert max(len(m) for m in log.expected.values()) * 23 > 3 * limit  # needs several splits
    rig.produce(log.messages)
    proc = rig.start(moengage={"max_payload_bytes": 128_000})
    rig.wait_caught_up()
    rig.assert_state(log.expected)

    stats = rig.emulator.stats()
    assert stats["by_status"].get("413", 0) >= 2, stats["by_status"]
    assert stats["accepted_body_bytes"]["max"] <= limit
    assert (
        metric(proc.metrics_port, "cohort_streamer_requests_total", status_class="413")
        == (stats["by_status"]["413"])
    )
    _no_dead_letters(rig)
    assert proc.terminate() == 0


# --- 3. credentials ---------------------------------------------------------------------------


def _assert_blocked_on_credentials(rig: StreamerRig, port: int | None, produced: int) -> None:
    assert port is not None

    def not_ready_for_credentials() -> bool:
        status, body = http_get(port, "/readyz")
        return status == 503 and "credentials" in orjson.loads(body)["reason"]

    wait_for(not_ready_for_credentials, 30, "/readyz to fail naming the credentials")
    wait_for(lambda: metric(port, "cohort_streamer_auth_failing") == 1, 10, "auth_failing")
    wait_for(
        lambda: metric(port, "cohort_streamer_paused_partitions") == 6, 10, "partitions paused"
    )
    wait_for(lambda: metric(port, RETRIES, cause="auth") >= 2, 10, "slow auth retries")
    time.sleep(0.6)  # three commit intervals
    assert rig.lag() == produced, "offsets were committed while the API refused credentials"


def _assert_healed(rig: StreamerRig, port: int | None, log: SampleLog) -> None:
    assert port is not None
    rig.wait_caught_up(timeout=60)
    rig.assert_state(log.expected)
    assert metric(port, "cohort_streamer_auth_failing") == 0
    assert http_get(port, "/readyz")[0] == 200


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_pause_without_commit_then_heal(rig: StreamerRig, status: int) -> None:
    """401/403 from the API: not ready (reason names credentials), auth_failing=1, partitions
    paused, slow retries, nothing committed. When the API accepts again it resumes by itself.
    """
    log = generate(events=2_000, cohorts=4, users=400, seed=26)
    rig.emulator.configure(fail_auth=status)
    rig.produce(log.messages)
    proc = rig.start(moengage={"auth_retry_seconds": 1})
    _assert_blocked_on_credentials(rig, proc.metrics_port, len(log.messages))
    assert not any(rig.emulator.members(c) for c in log.expected)

    rig.emulator.configure(fail_auth=None)
    _assert_healed(rig, proc.metrics_port, log)
    assert proc.terminate() == 0


def test_a_rotated_api_key_file_is_picked_up_without_restart(
    rig: StreamerRig, tmp_path: Path
) -> None:
    """MOENGAGE_API_KEY_FILE holds a wrong key (a revoked secret); the Secret is then rewritten
    with the right one: the streamer re-reads the file on its next auth retry and converges.
    Neither key value is ever logged.
    """
    wrong = "revoked-key-0000"
    key_file = tmp_path / "api-key"
    key_file.write_text(wrong + "\n")
    log = generate(events=2_000, cohorts=4, users=400, seed=27)
    rig.produce(log.messages)
    proc = rig.start(api_key_file=key_file, moengage={"auth_retry_seconds": 1})
    _assert_blocked_on_credentials(rig, proc.metrics_port, len(log.messages))
    assert rig.emulator.stats()["by_status"].get("401", 0) >= 2

    # the way a kubelet updates a mounted Secret: write aside, then rename over
    fresh = tmp_path / "api-key.new"
    fresh.write_text(rig.emulator.api_key + "\n")
    fresh.replace(key_file)
    _assert_healed(rig, proc.metrics_port, log)
    assert proc.terminate() == 0
    output = proc.log_file.read_text()
    assert wrong not in output and rig.emulator.api_key not in output
