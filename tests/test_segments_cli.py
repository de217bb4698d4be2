"""`cohort-streamer segments` against the emulator's v3 list/get and v2 archive/unarchive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from streamer.harness import write_config
from tests.fixtures.emulator import EmulatorClient


def segments(
    emulator: EmulatorClient, tmp_path: Path, *args: str, api_key: str | None = None
) -> subprocess.CompletedProcess[str]:
    settings = {
        "kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "unused"},
        "moengage": {"base_url": emulator.url},
    }
    config = write_config(tmp_path / "segments.yaml", settings)
    env = {
        "MOENGAGE_WORKSPACE_ID": emulator.workspace_id,
        "MOENGAGE_API_KEY": api_key or emulator.api_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "segments", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def sync(emulator: EmulatorClient, cohort_id: str, name: str) -> None:
    body = {
        "action": "add_members",
        "partner": "tests",
        "parameters": {"cohort_id": cohort_id, "cohort_name": name, "members": [{"uid": "u1"}]},
    }
    status, _ = emulator.send(body)
    assert status == 200


def test_list_get_archive_unarchive(emulator: EmulatorClient, tmp_path: Path) -> None:
    sync(emulator, "c1", "Churn risk")
    sync(emulator, "c2", "Big spenders")

    listed = segments(emulator, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "Churn risk" in listed.stdout and "Big spenders" in listed.stdout

    one = segments(emulator, tmp_path, "--json", "list", "--name", "Churn risk")
    data = orjson.loads(one.stdout)["data"]
    assert [s["name"] for s in data] == ["Churn risk"]
    segment_id = data[0]["id"]

    got = segments(emulator, tmp_path, "get", segment_id)
    assert got.returncode == 0 and segment_id in got.stdout

    archived = segments(emulator, tmp_path, "archive", "Churn risk")
    assert archived.returncode == 0, archived.stderr
    assert "archived" in archived.stdout.lower()
    state = orjson.loads(segments(emulator, tmp_path, "--json", "get", segment_id).stdout)
    assert state["data"][0]["archived"] is True

    again = segments(emulator, tmp_path, "archive", "Churn risk")
    assert again.returncode == 1

    restored = segments(emulator, tmp_path, "unarchive", "Churn risk", "--id", segment_id)
    assert restored.returncode == 0, restored.stderr
    state = orjson.loads(segments(emulator, tmp_path, "--json", "get", segment_id).stdout)
    assert state["data"][0]["archived"] is False


def test_errors_are_reported_with_the_api_message(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    missing = segments(emulator, tmp_path, "archive", "No such segment")
    assert missing.returncode == 1
    assert "404" in missing.stderr and "not found" in missing.stderr.lower()

    unknown = segments(emulator, tmp_path, "get", "0123456789abcdef01234567")
    assert unknown.returncode == 1 and "404" in unknown.stderr

    denied = segments(emulator, tmp_path, "list", api_key="wrong-key-456")
    assert denied.returncode == 1 and "401" in denied.stderr
    assert "wrong-key-456" not in denied.stderr + denied.stdout
