"""The streamer's guarantees (DESIGN.md "Semantics"), each on the real broker and the emulator."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import orjson

from streamer.decode import REASONS
from streamer.dev.sample import INVALID_SAMPLES, generate
from tests.fixtures.observe import http_get, metric, wait_for
from tests.fixtures.streamer import StreamerRig


def test_final_state_is_last_write_wins_with_invalid_events_dead_lettered(
    rig: StreamerRig,
) -> None:
    log = generate(events=20_000, cohorts=20, users=2_000, seed=11, invalid_every=97)
    rig.produce(log.messages)
    proc = rig.start()
    rig.wait_caught_up()
    rig.assert_state(log.expected)

    letters = rig.dead_letters(log.invalid)
    assert len(letters) == log.invalid
    reason_of = dict(INVALID_SAMPLES)
    for letter in letters:
        assert letter.value in reason_of
        assert letter.headers["reason"] == reason_of[letter.value]
        assert letter.headers["reason"] in REASONS
        assert letter.headers["detail"]
        assert letter.headers["topic"] == rig.topic
        assert int(letter.headers["partition"]) in range(6)
        assert int(letter.headers["offset"]) >= 0
        assert letter.key is not None and letter.key.startswith(b"bad-")

    stats = rig.emulator.stats()
    assert set(stats["by_status"]) == {"200"}, stats["by_status"]
    assert stats["max_body_bytes"] <= 128_000
    assert proc.terminate() == 0


def test_a_flush_sends_one_request_per_cohort_and_action(rig: StreamerRig) -> None:
    """Flapping users inside one linger window coalesce to their latest action."""
    messages: list[tuple[bytes, bytes]] = []
    expected: dict[str, set[str]] = {"c-a": set(), "c-b": set()}
    for round_ in range(6):
        for cohort in expected:
            for user in range(300):
                uid = f"u{user}"
                enter = (round_ + user) % 3 != 2 or round_ < 5
                if round_ == 5 and user % 4 == 0:
                    enter = False  # the last word for every 4th user is an exit
                expected[cohort].add(uid) if enter else expected[cohort].discard(uid)
                event = {"action": "enter" if enter else "exit", "cohort_id": cohort, "uid": uid}
                messages.append((uid.encode(), orjson.dumps(event)))
    # seed the emulator with everyone, so the removes are real changes
    for cohort in expected:
        status, _ = rig.emulator.send(
            {
                "action": "add_members",
                "partner": "tests",
                "parameters": {
                    "cohort_id": cohort,
                    "cohort_name": cohort,
                    "members": [{"uid": f"u{u}"} for u in range(300)],
                },
            }
        )
        assert status == 200
    rig.produce(messages)
    proc = rig.start(batching={"linger_ms": 4000})
    rig.wait_caught_up()
    rig.assert_state(expected)
    stats = rig.emulator.stats()
    # one seed request per cohort, then exactly one add and one remove per cohort
    assert stats["by_action"] == {"add_members": 4, "remove_members": 2}, stats["by_action"]
    assert stats["members_per_request"]["sum"] == 600 + 600
    assert metric(proc.metrics_port, "cohort_streamer_events_coalesced_total") == 3000
    assert proc.terminate() == 0


def test_nothing_is_committed_while_the_api_fails_and_all_is_delivered_after(
    rig: StreamerRig,
) -> None:
    log = generate(events=3_000, cohorts=5, users=500, seed=3)
    rig.emulator.configure(fail_5xx_ratio=1.0)
    rig.produce(log.messages)
    proc = rig.start()
    wait_for(
        lambda: metric(proc.metrics_port, "cohort_streamer_retries_total") >= 20,
        60,
        "retries against the failing API",
    )
    time.sleep(1.0)  # several commit intervals
    assert rig.lag() == len(log.messages), "offsets were committed past unacknowledged events"
    assert all(not rig.emulator.members(c) for c in log.expected)

    rig.emulator.configure(fail_5xx_ratio=0.0)
    rig.wait_caught_up()
    rig.assert_state(log.expected)
    assert proc.terminate() == 0


def test_a_restart_resumes_from_the_committed_offsets(rig: StreamerRig) -> None:
    log = generate(events=10_000, cohorts=8, users=1_500, seed=5)
    first, second = log.messages[:6_000], log.messages[6_000:]
    rig.produce(first)
    proc = rig.start()
    rig.wait_caught_up()
    assert proc.terminate() == 0

    rig.produce(second)
    proc = rig.start()
    rig.wait_caught_up()
    rig.assert_state(log.expected)
    consumed = metric(proc.metrics_port, "cohort_streamer_events_consumed_total")
    assert consumed == len(second), "the restarted streamer re-read committed events"
    assert proc.terminate() == 0


def test_the_rate_budget_holds_in_every_sliding_window(rig: StreamerRig) -> None:
    """A short window (3 s, 6 requests) so the test sees many windows; no 429 may come back."""
    rig.emulator.configure(rate_limit_per_minute=6, rate_window_seconds=3)
    log = generate(events=4_000, cohorts=30, users=600, seed=9)
    rig.produce(log.messages)
    proc = rig.start(
        moengage={"rate_limit_per_minute": 6, "rate_window_seconds": 3},
        batching={"linger_ms": 100},
    )
    rig.wait_caught_up(timeout=180)
    rig.assert_state(log.expected)
    stats = rig.emulator.stats()
    assert "429" not in stats["by_status"], stats["by_status"]
    assert stats["max_arrivals_in_window"] <= 6
    # scarce tokens turn into fuller requests: far fewer requests than (cohort, action) x rounds
    assert stats["requests_total"] <= 2 * 30 + 10
    assert proc.terminate() == 0


def test_sigterm_flushes_every_buffer_commits_and_exits_zero(rig: StreamerRig) -> None:
    log = generate(events=5_000, cohorts=10, users=800, seed=13)
    rig.produce(log.messages)
    proc = rig.start(batching={"linger_ms": 60_000})  # nothing would flush on its own
    wait_for(
        lambda: metric(proc.metrics_port, "cohort_streamer_events_consumed_total")
        == len(log.messages),
        60,
        "all events consumed",
    )
    assert rig.emulator.stats()["requests_total"] == 0
    started = time.monotonic()
    assert proc.terminate(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert rig.lag() == 0
    rig.assert_state(log.expected)


def test_metrics_and_health_endpoints(rig: StreamerRig) -> None:
    log = generate(events=1_000, cohorts=3, users=200, seed=17, invalid_every=100)
    rig.produce(log.messages)
    proc = rig.start()
    rig.wait_caught_up()
    port = proc.metrics_port
    assert port is not None
    status, body = http_get(port, "/healthz")
    assert status == 200 and orjson.loads(body)["status"] == "ok"
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 30, "readiness")
    text = http_get(port, "/metrics")[1].decode()
    assert metric(port, "cohort_streamer_events_consumed_total") == len(log.messages)
    assert metric(port, "cohort_streamer_commits_total") >= 1
    assert metric(port, "cohort_streamer_dlq_writes_total") == log.invalid
    accepted = re.search(
        r'cohort_streamer_requests_total\{action="add_members",status_class="2xx"\} (\S+)', text
    )
    assert accepted and float(accepted.group(1)) >= 3
    assert proc.terminate() == 0


def test_config_errors_exit_2_with_one_line(rig: StreamerRig) -> None:
    config = rig.workdir / "bad.yaml"
    config.write_text("kafka:\n  bootstrap_servers: x:1\n  dlq_topic: d\n  topicz: [a]\n")
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"MOENGAGE_WORKSPACE_ID": "w", "MOENGAGE_API_KEY": "secret-key-123", "PATH": ""},
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "kafka.topicz" in lines[0], result.stderr
    assert "secret-key-123" not in result.stderr


def test_never_two_requests_of_one_cohort_in_flight(rig: StreamerRig) -> None:
    """With slow answers and a short linger, every cohort is due again while it is being sent."""
    rig.emulator.configure(latency_ms=300)
    log = generate(events=6_000, cohorts=4, users=3_000, seed=31)
    proc = rig.start(batching={"linger_ms": 20}, moengage={"max_in_flight": 8})
    for start in range(0, len(log.messages), 500):  # a steady trickle, so buffers keep refilling
        rig.produce(log.messages[start : start + 500])
        time.sleep(0.1)
    rig.wait_caught_up()
    rig.assert_state(log.expected)
    stats = rig.emulator.stats()
    assert stats["requests_total"] > 4 * 3, "too few requests to show overlap"
    assert stats["max_in_flight_per_cohort"] == 1
    assert proc.terminate() == 0
