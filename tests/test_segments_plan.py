"""Segments as code: `segments plan|apply -f segments.yaml` against the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streamer.segment_limits import Quota
from streamer.segments.pacing import Pacer
from tests.fixtures.emulator import EmulatorClient, auth_headers, cohort_body
from tests.fixtures.segments_cli import SegmentsCli

SAMPLE = Path(__file__).resolve().parent.parent / "config" / "segments.yaml"


def city(name: str, *cities: str) -> dict[str, Any]:
    filters = [{"filter_type": "user_attributes", "name": "City", "data_type": "string",
                "operator": "in", "value": list(cities)}]  # fmt: skip
    return {"name": name, "included_filters": {"filter_operator": "and", "filters": filters}}


def manifest(tmp_path: Path, *segments: dict[str, Any]) -> str:
    path = tmp_path / "segments.yaml"
    path.write_text(yaml.safe_dump({"segments": list(segments)}))
    return str(path)


def actions(result: Any) -> dict[str, str]:
    return {step["name"]: step["action"] for step in result.json()["steps"]}


def create_directly(emulator: EmulatorClient, segment: dict[str, Any]) -> str:
    status, _, doc = emulator.request(
        "POST", "/v3/custom-segments", orjson.dumps(segment), auth_headers()
    )
    assert status == 201, doc
    return str(doc["data"]["id"])


def test_the_sample_applies_and_a_second_apply_changes_nothing(
    segments_cli: SegmentsCli, emulator: EmulatorClient
) -> None:
    planned = segments_cli("plan", "-f", str(SAMPLE), "--json")
    assert planned.code == 0, planned.err
    declared = yaml.safe_load(SAMPLE.read_text())["segments"]
    assert set(actions(planned).values()) == {"create"} and len(actions(planned)) == len(declared)

    applied = segments_cli("apply", "-f", str(SAMPLE))
    assert applied.code == 0, applied.out + applied.err
    writes = emulator.stats()["segments_api_requests"]
    again = segments_cli("apply", "-f", str(SAMPLE), "--json")
    assert again.code == 0
    assert set(actions(again).values()) == {"leave"}
    # the second apply only read: one listing and one get per declared segment
    assert emulator.stats()["segments_api_requests"] - writes == 1 + len(declared)
    listed = segments_cli("--json", "list").json()["data"]
    assert sorted(s["name"] for s in listed) == sorted(d["name"] for d in declared)


def test_plan_shows_create_update_leave_and_archive_as_a_table(
    segments_cli: SegmentsCli, emulator: EmulatorClient, tmp_path: Path
) -> None:
    create_directly(emulator, city("Same", "Pune"))
    create_directly(emulator, city("Changed", "Goa"))
    create_directly(emulator, city("Undeclared", "Agra"))
    assert emulator.send(cohort_body(["u"], cohort_id="c1", cohort_name="Synced"))[0] == 200
    path = manifest(tmp_path, city("Same", "Pune"), city("Changed", "Delhi"), city("New", "Ooty"))

    without_prune = segments_cli("plan", "-f", path, "--json")
    assert actions(without_prune) == {"Same": "leave", "Changed": "update", "New": "create"}
    table = segments_cli("plan", "-f", path, "--prune")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split() == ["action", "name", "id", "reason"]
    assert any(line.startswith("archive") and "Undeclared" in line for line in lines)
    assert not any("Synced" in line for line in lines), "a Cohort Sync segment is never pruned"

    applied = segments_cli("apply", "-f", path, "--prune", "--json")
    assert applied.code == 0, applied.out
    assert {s["name"]: s["result"] for s in applied.json()["steps"]} == {
        "Same": "unchanged", "Changed": "done", "New": "done", "Undeclared": "done",
    }  # fmt: skip
    assert set(actions(segments_cli("plan", "-f", path, "--prune", "--json")).values()) == {
        "leave"
    }


def test_an_identical_definition_held_by_another_segment_is_reported_clearly(
    segments_cli: SegmentsCli, emulator: EmulatorClient, tmp_path: Path
) -> None:
    holder = create_directly(emulator, city("Someone else's", "Pune"))
    path = manifest(tmp_path, city("Mine", "Pune"), city("Fine", "Goa"))
    result = segments_cli("apply", "-f", path)
    assert result.code == 1
    line = next(line for line in result.out.splitlines() if "Mine" in line)
    assert "Someone else's" in line and holder in line and "exact definition" in line
    assert any("Fine" in line and "done" in line for line in result.out.splitlines())


@pytest.mark.parametrize("kind", ["cohort", "archived"])
def test_names_held_by_other_kinds_and_archived_segments(
    segments_cli: SegmentsCli, emulator: EmulatorClient, tmp_path: Path, kind: str
) -> None:
    if kind == "cohort":
        assert emulator.send(cohort_body(["u"], cohort_id="c1", cohort_name="Taken"))[0] == 200
    else:
        segment_id = create_directly(emulator, city("Taken", "Pune"))
        archive = orjson.dumps({"name": "Taken", "cs_id": segment_id})
        emulator.request("PATCH", "/v2/custom-segments/archive", archive, auth_headers())
    path = manifest(tmp_path, city("Taken", "Goa"))
    planned = actions(segments_cli("plan", "-f", path, "--json"))
    result = segments_cli("apply", "-f", path, "--json")
    if kind == "cohort":
        assert planned == {"Taken": "conflict"} and result.code == 1
        assert "COHORT_SYNC" in result.json()["steps"][0]["result"]
    else:
        assert planned == {"Taken": "unarchive+update"} and result.code == 0, result.out
        again = segments_cli("plan", "-f", path, "--json")
        assert actions(again) == {"Taken": "leave"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("segments: {}", "`segments` list"),
        ("segments: [{name: a}]", "exactly `name` and `included_filters`"),
        ("segments: [{name: '', included_filters: {}}]", "non-empty string"),
        ("segments: [{name: a, included_filters: {}}, {name: a, included_filters: {}}]", "twice"),
    ],
)
def test_a_bad_manifest_is_a_usage_error(
    segments_cli: SegmentsCli, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text(content)
    for command in ("plan", "apply"):
        result = segments_cli(command, "-f", str(path))
        assert result.code == 2 and message in result.err


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("limit", "seconds", "calls"), [(50, 60.0, 51), (3, 10.0, 7)])
async def test_apply_paces_itself_by_the_documented_limits(
    limit: int, seconds: float, calls: int
) -> None:
    """No window of `seconds` ever holds more than `limit` calls, and waiting is minimal."""
    time = FakeTime()
    pacer = Pacer(clock=time.clock, sleep=time.sleep)
    sent: list[float] = []
    for _ in range(calls):
        await pacer.wait("create", (Quota(limit, seconds), Quota(limit * 4, seconds * 60)))
        sent.append(time.now)
        time.now += 0.01  # each call takes a little time
    for i, start in enumerate(sent):
        assert sum(start <= t < start + seconds for t in sent[i:]) <= limit
    assert sent[limit] == pytest.approx(sent[0] + seconds)
