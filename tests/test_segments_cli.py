"""`cohort-streamer segments` against the emulator's v3 list/get and v2 archive/unarchive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streamer.dev.harness import write_config
from streamer.segments.api import ANSWER_CAP_BYTES
from tests.fixtures.emulator import EmulatorClient
from tests.fixtures.hostile_api import Answer, Forward, MakeHostileApi

pytestmark = pytest.mark.slow  # each case runs the real `cohort-streamer segments`


def segments(
    emulator: EmulatorClient,
    tmp_path: Path,
    *args: str,
    api_key: str | None = None,
    base_url: str | None = None,
) -> subprocess.CompletedProcess[str]:
    settings = {
        "kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "unused"},
        "moengage": {"base_url": base_url or emulator.url},
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


# --- a hostile API: the same rules as Cohort Sync (no redirects, capped answers) ---


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 399])
@pytest.mark.parametrize("command", [("list",), ("archive", "Churn risk")])
def test_redirects_are_refused_and_never_followed(
    emulator: EmulatorClient,
    hostile_api: MakeHostileApi,
    tmp_path: Path,
    status: int,
    command: tuple[str, ...],
) -> None:
    elsewhere = hostile_api()
    api = hostile_api(upstream=emulator.url)
    location = f"{elsewhere.url}/v3/custom-segments"
    api.answer(Answer(status, {"Location": location}))
    result = segments(emulator, tmp_path, *command, base_url=api.url)
    assert result.returncode == 1
    assert location in result.stderr and "moengage.base_url" in result.stderr
    assert "Traceback" not in result.stderr
    assert elsewhere.received == [], "the credentials left the configured origin"
    assert emulator.api_key not in result.stderr + result.stdout


def test_a_listing_within_the_cap_is_shown_and_a_larger_one_refused(
    emulator: EmulatorClient, hostile_api: MakeHostileApi, tmp_path: Path
) -> None:
    """The emulator's answer padded with whitespace is still valid JSON: shown whole below the
    cap; past it the tool reads only the cap and says so, instead of printing a cut listing."""
    sync(emulator, "c1", "Churn risk")
    api = hostile_api(upstream=emulator.url)
    for size, ok in [(ANSWER_CAP_BYTES // 2, True), (50 * 2**20, False)]:
        api.answer(Forward(pad_to=size))
        result = segments(emulator, tmp_path, "list", base_url=api.url)
        assert (result.returncode == 0) == ok, result.stderr
        assert ("Churn risk" in result.stdout) == ok
        assert ("larger than" in result.stderr) == (not ok)


@pytest.mark.parametrize(
    "answer",
    [
        Answer(500, body=b"<html>", pad_to=50 * 2**20),
        Answer(200, body=b"<html>not json"),
        Answer(101),
    ],
)
def test_odd_answers_are_one_line_errors(
    emulator: EmulatorClient, hostile_api: MakeHostileApi, tmp_path: Path, answer: Answer
) -> None:
    api = hostile_api()
    api.answer(answer)
    result = segments(emulator, tmp_path, "list", base_url=api.url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
