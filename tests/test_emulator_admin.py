"""Inspection and control endpoints, the fixture client, the thread runner and the CLI."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import orjson
import pytest

from streamer.emulator import EmulatorConfig, EmulatorThread, Knobs
from streamer.emulator.cli import add_arguments, config_from_args
from tests.fixtures.emulator import (
    API_KEY,
    WORKSPACE_ID,
    EmulatorClient,
    cohort_body,
)


def test_members_and_cohorts(emulator: EmulatorClient) -> None:
    body = cohort_body(["b", "a", "c"], cohort_id="team/7 x", cohort_name="Team", description="d")
    assert emulator.send(body)[0] == 200
    assert emulator.members("team/7 x") == {"a", "b", "c"}
    _, _, doc = emulator.request("GET", "/_emulator/cohorts/team%2F7%20x/members")
    assert doc["members"] == ["a", "b", "c"] and doc["count"] == 3
    cohort = emulator.cohorts()["team/7 x"]
    assert cohort["name"] == "Team"
    assert cohort["member_count"] == 3
    assert cohort["description"] == "d"
    assert cohort["partner"] == "cohort-streamer"
    assert emulator.members("unknown") == set()


def test_first_name_is_kept(emulator: EmulatorClient) -> None:
    emulator.send(cohort_body(["a"], cohort_name="Original"))
    emulator.send(cohort_body(["a"], action="remove_members", cohort_name="Renamed"))
    cohorts = emulator.cohorts()
    assert cohorts["cohort-1"]["name"] == "Original"
    assert cohorts["cohort-1"]["member_count"] == 0


def test_remove_on_unknown_cohort_creates_empty_segment(emulator: EmulatorClient) -> None:
    assert emulator.send(cohort_body(["a"], action="remove_members", cohort_id="new"))[0] == 200
    assert emulator.cohorts()["new"]["member_count"] == 0


def test_stats(emulator: EmulatorClient) -> None:
    emulator.send(cohort_body(["a", "b", "c"]))
    emulator.send(cohort_body(["a"], action="remove_members"))
    emulator.send(cohort_body(["a", "b"]))  # 'b' already in: one change
    emulator.send(b"{}")
    stats = emulator.stats(timestamps=True)
    assert stats["requests_total"] == 4
    assert stats["by_status"] == {"200": 3, "400": 1}
    assert stats["by_action"] == {"add_members": 2, "remove_members": 1}
    assert stats["members_by_action"] == {"add_members": 5, "remove_members": 1}
    assert stats["members_per_request"] == {"count": 3, "sum": 6, "min": 1, "max": 3}
    assert stats["memberships_changed"] == 3 + 1 + 1
    assert stats["max_accepted_in_window"] == 3
    assert stats["max_arrivals_in_window"] == 4
    assert stats["max_body_bytes"] == len(orjson.dumps(cohort_body(["a", "b", "c"])))
    assert stats["bytes_received"] >= stats["accepted_body_bytes"]["sum"] + 2
    assert len(stats["arrival_times"]) == 4 and len(stats["accepted_times"]) == 3
    assert "arrival_times" not in emulator.stats()


def test_configure_and_reset(emulator: EmulatorClient) -> None:
    knobs = emulator.configure(latency_ms=1, refuse_uids={"x"}, rate_limit_per_minute=9)
    assert (knobs["latency_ms"], knobs["refuse_uids"]) == (1.0, ["x"])
    assert emulator.config()["rate_limit_per_minute"] == 9
    emulator.send(cohort_body(["a"]))
    emulator.reset()
    assert emulator.cohorts() == {}
    assert emulator.stats()["requests_total"] == 0
    assert emulator.config()["refuse_uids"] == ["x"]  # knobs survive a plain reset
    emulator.reset(knobs=True)
    assert emulator.config()["refuse_uids"] == []


def test_configure_rejects_bad_knobs(emulator: EmulatorClient) -> None:
    before = emulator.config()
    for body in (b'{"bogus": 1}', b'{"fail_5xx_ratio": 2}', b"[1]", b"{"):
        status, _, doc = emulator.request("POST", "/_emulator/config", body)
        assert status == 400 and "error" in doc
    assert emulator.config() == before
    with pytest.raises(RuntimeError):
        emulator.configure(latency_ms=-1)


def test_runtime_api_key_rotation(emulator: EmulatorClient) -> None:
    emulator.configure(api_key="rotated")
    assert emulator.send(cohort_body())[0] == 401
    emulator.api_key = "rotated"
    assert emulator.send(cohort_body())[0] == 200


def test_client_usable_from_other_threads(emulator: EmulatorClient) -> None:
    def worker(n: int) -> None:
        for i in range(10):
            assert emulator.send(cohort_body([f"t{n}-{i}"]))[0] == 200

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(emulator.members("cohort-1")) == 40


def test_thread_start_stop_is_idempotent() -> None:
    config = EmulatorConfig(workspace_id=WORKSPACE_ID, knobs=Knobs(api_key=API_KEY))
    runner = EmulatorThread(config)
    assert runner.start() is runner.start()
    url = runner.url
    with urllib.request.urlopen(url + "/_emulator/health", timeout=5) as resp:
        assert orjson.loads(resp.read()) == {"status": "ok"}
    runner.stop()
    runner.stop()
    with pytest.raises(RuntimeError):
        _ = runner.url


def test_thread_reports_startup_failure() -> None:
    with EmulatorThread(EmulatorConfig(knobs=Knobs(api_key=API_KEY))) as taken:
        clash = EmulatorThread(EmulatorConfig(port=taken.port, knobs=Knobs(api_key=API_KEY)))
        with pytest.raises(RuntimeError, match="failed to start"):
            clash.start()


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--port",
            "0",
            "--workspace-id",
            "W",
            "--api-key",
            "K",
            "--rate-limit-per-minute",
            "10",
            "--fail-429-ratio",
            "0.5",
            "--refuse-uid",
            "a",
            "--refuse-uid",
            "b",
            "--fail-auth",
            "403",
        ]
    )
    config = config_from_args(args)
    assert (config.workspace_id, config.port, config.host) == ("W", 0, "127.0.0.1")
    knobs = config.knobs
    assert (knobs.api_key, knobs.rate_limit_per_minute, knobs.fail_429_ratio) == ("K", 10, 0.5)
    assert knobs.max_payload_bytes == 128_000 and knobs.rate_window_seconds == 60.0
    assert knobs.refuse_uids == frozenset({"a", "b"}) and knobs.fail_auth == 403


def test_cli_process_serves_until_sigterm() -> None:
    command = [
        sys.executable,
        "-m",
        "streamer.emulator",
        "--port",
        "0",
        "--workspace-id",
        WORKSPACE_ID,
        "--api-key",
        API_KEY,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("emulator listening on http://127.0.0.1:")
        client = EmulatorClient(line.split()[-1], WORKSPACE_ID, API_KEY)
        assert client.send(cohort_body(["cli"]))[0] == 200
        assert client.members("cohort-1") == {"cli"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
