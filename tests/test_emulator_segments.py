"""v3 segment list/get and v2 archive/unarchive, through the sync `emulator` fixture."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import orjson
import pytest

from tests.fixtures.emulator import API_KEY, WORKSPACE_ID, EmulatorClient, auth_headers, cohort_body


def v3_get(emulator: EmulatorClient, path: str, **headers: str) -> tuple[int, Any]:
    hdrs = {k: v for k, v in auth_headers().items() if k != "Content-Type"}
    hdrs.update(headers)
    status, _, doc = emulator.request("GET", path, headers=hdrs)
    return status, doc


def v2_patch(emulator: EmulatorClient, op: str, body: Any) -> tuple[int, Any]:
    hdrs = {k: v for k, v in auth_headers().items() if k != "MOE-APPKEY"}
    status, _, doc = emulator.request(
        "PATCH", f"/v2/custom-segments/{op}", orjson.dumps(body), hdrs
    )
    return status, doc


def make_cohorts(emulator: EmulatorClient) -> None:
    assert emulator.send(cohort_body(["a"], cohort_id="c1", cohort_name="First"))[0] == 200
    assert emulator.send(cohort_body(["b"], cohort_id="c2", cohort_name="Second"))[0] == 200


def test_list_all_and_by_name(emulator: EmulatorClient) -> None:
    make_cohorts(emulator)
    status, doc = v3_get(emulator, "/v3/custom-segments")
    assert status == 200
    assert doc["type"] == "custom_segment" and isinstance(doc["response_id"], str)
    assert [item["name"] for item in doc["data"]] == ["First", "Second"]
    item = doc["data"][0]
    assert set(item) == {"name", "id", "created_time", "type", "source", "archived"}
    assert re.fullmatch(r"[0-9a-f]{24}", item["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", item["created_time"])
    assert (item["source"], item["archived"]) == ("API", False)

    query = urllib.parse.urlencode({"name": "Second"})
    status, doc = v3_get(emulator, f"/v3/custom-segments?{query}")
    assert [item["name"] for item in doc["data"]] == ["Second"]
    status, doc = v3_get(emulator, "/v3/custom-segments?name=Sec")
    assert (status, doc["data"]) == (200, [])


def test_get_by_id_and_404(emulator: EmulatorClient) -> None:
    make_cohorts(emulator)
    segment_id = emulator.cohorts()["c2"]["segment_id"]
    status, doc = v3_get(emulator, f"/v3/custom-segments/{segment_id}")
    assert status == 200
    assert [(item["id"], item["name"]) for item in doc["data"]] == [(segment_id, "Second")]

    status, doc = v3_get(emulator, "/v3/custom-segments/000000000000000000000000")
    assert status == 404
    assert doc["type"] == "custom_segment"
    assert doc["error"]["code"] == "Entity Not Found"
    assert doc["error"]["message"].endswith("000000000000000000000000")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Authorization": ""}, 401, "Authentication required"),
        ({"MOE-APPKEY": "other"}, 400, "Request Error"),
        ({"Authorization": "Basic b3RoZXI6eA=="}, 401, "Authentication required"),
    ],
)
def test_v3_auth(emulator: EmulatorClient, headers: dict[str, str], status: int, code: str) -> None:
    got, doc = v3_get(emulator, "/v3/custom-segments", **headers)
    assert got == status
    assert doc["error"]["code"] == code


def test_v3_forced_auth_failure(emulator: EmulatorClient) -> None:
    emulator.configure(fail_auth=403)
    status, doc = v3_get(emulator, "/v3/custom-segments")
    assert status == 403
    assert doc["error"]["code"] == "Account Suspended"


def listed(emulator: EmulatorClient) -> dict[str, bool]:
    _, doc = v3_get(emulator, "/v3/custom-segments")
    return {item["name"]: item["archived"] for item in doc["data"]}


def test_archive_and_unarchive_by_name(emulator: EmulatorClient) -> None:
    make_cohorts(emulator)
    status, doc = v2_patch(emulator, "archive", {"name": "First"})
    segment_id = emulator.cohorts()["c1"]["segment_id"]
    assert status == 202
    assert doc == {
        "message": "Successfully archived the custom segment",
        "success": True,
        "cs_name": "First",
        "cs_id": segment_id,
    }
    assert listed(emulator) == {"First": True, "Second": False}
    assert emulator.cohorts()["c1"]["archived"] is True

    status, doc = v2_patch(emulator, "archive", {"name": "First"})
    assert (status, doc["title"]) == (400, "Invalid Request")

    status, doc = v2_patch(emulator, "unarchive", {"name": "First"})
    assert (status, doc["message"]) == (202, "Successfully unarchived the custom segment")
    assert listed(emulator) == {"First": False, "Second": False}
    status, doc = v2_patch(emulator, "unarchive", {"name": "First"})
    assert (status, doc["title"]) == (400, "Invalid Request")


def test_archive_cs_id_wins_over_name(emulator: EmulatorClient) -> None:
    make_cohorts(emulator)
    second = emulator.cohorts()["c2"]["segment_id"]
    status, doc = v2_patch(emulator, "archive", {"name": "First", "cs_id": second})
    assert (status, doc["cs_name"]) == (202, "Second")


def test_archived_segment_still_syncs(emulator: EmulatorClient) -> None:
    make_cohorts(emulator)
    assert v2_patch(emulator, "archive", {"name": "First"})[0] == 202
    assert emulator.send(cohort_body(["z"], cohort_id="c1", cohort_name="First"))[0] == 200
    assert emulator.members("c1") == {"a", "z"}


@pytest.mark.parametrize(
    ("body", "status", "title", "description"),
    [
        ({"name": "Nope"}, 404, "Entity Not Found", "Segment not found with the given name: Nope"),
        (
            {"name": "First", "cs_id": "ffffffffffffffffffffffff"},
            404,
            "Entity Not Found",
            "Segment not found with the given cs_id: ffffffffffffffffffffffff",
        ),
        ({"cs_id": "x"}, 400, "Invalid Request", "name is required"),
        ([], 400, "Invalid Request", "Request body must be a JSON object"),
    ],
)
def test_archive_errors(
    emulator: EmulatorClient, body: Any, status: int, title: str, description: str
) -> None:
    make_cohorts(emulator)
    assert v2_patch(emulator, "archive", body) == (
        status,
        {"title": title, "description": description},
    )


def test_archive_auth_and_content_type(emulator: EmulatorClient) -> None:
    body = orjson.dumps({"name": "First"})
    status, _, doc = emulator.request(
        "PATCH", "/v2/custom-segments/archive", body, {"Content-Type": "application/json"}
    )
    assert (status, doc["title"]) == (401, "Authentication required")
    headers = auth_headers(WORKSPACE_ID, API_KEY) | {"Content-Type": "text/csv"}
    status, _, doc = emulator.request("PATCH", "/v2/custom-segments/archive", body, headers)
    assert status == 415
