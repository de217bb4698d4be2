"""v2 file segments and the v1 CSV API in the emulator: 202 at once, then the file, then the
callback; the CSV rules of §3.1, the ops quotas of §3.2, and Cohort Sync kept off them."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
import pytest

from streamer.emulator import EmulatorConfig, EmulatorThread, Knobs
from tests.fixtures.emulator import (
    API_KEY,
    WORKSPACE_ID,
    EmulatorClient,
    FakeClock,
    auth_headers,
    cohort_body,
)
from tests.fixtures.files import FileServer

BASE = "/v2/custom-segments/file-segment"
PATHS = {"add": f"{BASE}/add-users", "remove": f"{BASE}/remove-users", "replace": f"{BASE}/replace"}


def v2_headers(content_type: str = "text/csv") -> dict[str, str]:
    headers = {k: v for k, v in auth_headers().items() if k != "MOE-APPKEY"}
    return {**headers, "Content-Type": content_type}


def file_request(
    emulator: EmulatorClient, operation: str, body: dict[str, Any], **headers: str
) -> tuple[int, Any]:
    method, path = ("POST", BASE) if operation == "create" else ("PUT", PATHS[operation])
    status, _, doc = emulator.request(method, path, orjson.dumps(body), {**v2_headers(), **headers})
    return status, doc


def body(files: FileServer, name: str, csv: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "attribute_name": "ID",
        "attribute_type": "string",
        "file_url": files.url(csv),
        "callback_url": f"{files.base}/callback",
        "expiry_time": 30,
        **extra,
    }


def members(emulator: EmulatorClient, segment_id: str) -> set[str]:
    status, _, doc = emulator.request("GET", f"/_emulator/segments/{segment_id}/members")
    assert status == 200, doc
    return set(doc["members"])


def test_create_add_remove_replace_apply_the_file_and_call_back(
    emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("a.csv", b"u1\nu2\nu3\n")
    file_server.serve("b.csv", b"u4\r\nu5")
    file_server.serve("c.csv", b"u1\nu5\n")
    file_server.serve("d.csv", b"u9\n")
    status, doc = file_request(emulator, "create", body(file_server, "Imported", "a.csv"))
    assert status == 202, doc
    assert doc["message"] == "File-segment creation request accepted" and doc["success"] is True
    segment_id = doc["cs_id"]
    first = file_server.wait_for_callbacks(1)[0]
    assert first["status"] == 201 and first["segment_name"] == "Imported"
    assert (first["values_found"], first["values_processed"], first["user_count"]) == (3, 3, 3)
    assert first["db_name"] == WORKSPACE_ID and len(first["request_id"]) == 32
    assert members(emulator, segment_id) == {"u1", "u2", "u3"}

    steps = [("add", "b.csv", {"u1", "u2", "u3", "u4", "u5"}),
             ("remove", "c.csv", {"u2", "u3", "u4"}),
             ("replace", "d.csv", {"u9"})]  # fmt: skip
    for count, (operation, csv, expected) in enumerate(steps, start=2):
        by = {"cs_id": segment_id} if operation == "remove" else {}
        request = body(file_server, "Imported", csv, **by)
        del request["expiry_time"]
        status, doc = file_request(emulator, operation, request)
        assert (status, doc["cs_id"]) == (202, segment_id), doc
        assert file_server.wait_for_callbacks(count)[-1]["status"] == 201
        assert members(emulator, segment_id) == expected, operation


def test_the_segment_exists_empty_before_the_file_arrives(
    emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("slow.csv", 404)
    status, doc = file_request(emulator, "create", body(file_server, "Empty", "slow.csv"))
    assert status == 202
    listed = emulator.request("GET", "/v3/custom-segments?name=Empty", None, auth_headers())[2]
    assert [s["id"] for s in listed["data"]] == [doc["cs_id"]]
    result = file_server.wait_for_callbacks(1)[0]
    assert result["status"] == 400
    assert result["error_message"] == (
        "File download failed. Created custom_segment contains 0 users."
    )
    assert members(emulator, doc["cs_id"]) == set()


BAD_FILES = [
    (b"u1,\n", "More than one column"),
    (b"u1,u2\n", "More than one column"),
    (b'"u1"\n', "Quotes or special characters"),
    (b"a#bc\n", "Quotes or special characters"),
    (b"u1\nu1\n", "Duplicate value at line 2"),
    (b"u1\n\nu2\n", "Empty row at line 2"),
    (b"", "File is empty"),
    (b"\xff\xfe", "not UTF-8"),
]


@pytest.mark.parametrize(("content", "reason"), BAD_FILES)
def test_files_breaking_the_csv_rules_fail_with_400_and_change_nothing(
    emulator: EmulatorClient, file_server: FileServer, content: bytes, reason: str
) -> None:
    file_server.serve("good.csv", b"keep\n")
    _, doc = file_request(emulator, "create", body(file_server, "S", "good.csv"))
    file_server.wait_for_callbacks(1)
    file_server.serve("bad.csv", content)
    request = body(file_server, "S", "bad.csv")
    del request["expiry_time"]
    assert file_request(emulator, "add", request)[0] == 202
    result = file_server.wait_for_callbacks(2)[-1]
    assert result["status"] == 400 and reason in result["error_message"]
    assert members(emulator, doc["cs_id"]) == {"keep"}


@pytest.mark.parametrize(
    ("limit", "size", "ok"),
    [(1000, 999, True), (1000, 1000, False), (1000, 5000, False),
     (3_000_000, 2_999_999, True), (3_000_000, 3_000_000, False)],
)  # fmt: skip
@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "unsized"])
def test_file_size_limit(
    emulator: EmulatorClient,
    file_server: FileServer,
    limit: int,
    size: int,
    ok: bool,
    sized: bool,
) -> None:
    """Below the limit every value arrives, however many reads it takes; at it, refused."""
    emulator.configure(max_file_bytes=limit)
    values = [b"%09d" % i for i in range(size // 10)]
    content = b"\n".join(values) + b"\n"
    content += b"x" * (size - len(content))  # the last value grows to make the size exact
    assert len(content) == size
    file_server.serve("big.csv", content, sized=sized)
    _, doc = file_request(emulator, "create", body(file_server, "Big", "big.csv"))
    result = file_server.wait_for_callbacks(1)[0]
    assert (result["status"] == 201) == ok, result
    if ok:
        assert result["values_found"] == len(content.splitlines())
        assert len(members(emulator, doc["cs_id"])) == result["values_found"]
    else:
        assert result["error_message"].startswith("File size cannot be greater than")


def test_double_attribute_values_must_be_numbers(
    emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("n.csv", b"1.5\n2\n")
    file_server.serve("x.csv", b"1\nabc\n")
    file_request(emulator, "create", body(file_server, "N", "n.csv", attribute_type="double"))
    file_request(emulator, "create", body(file_server, "X", "x.csv", attribute_type="double"))
    results = {r["segment_name"]: r for r in file_server.wait_for_callbacks(2)}
    assert results["N"]["status"] == 201
    refused = results["X"]
    assert refused["status"] == 400 and "Not a number at line 2" in refused["error_message"]


def test_told_to_fail_the_callback_reports_500(
    emulator: EmulatorClient, file_server: FileServer
) -> None:
    emulator.configure(fail_file_processing=True)
    file_server.serve("a.csv", b"u1\n")
    file_request(emulator, "create", body(file_server, "F", "a.csv"))
    result = file_server.wait_for_callbacks(1)[0]
    assert result["status"] == 500
    assert result["error_message"] == "Internal Server Error. Contact MoEngage Team."
    assert emulator.stats()["file_results"] == {"500": 1}


@pytest.mark.parametrize(
    ("change", "status", "title"),
    [
        ({"name": ""}, 400, "Invalid Request"),
        ({"attribute_type": "int"}, 400, "Invalid Request"),
        ({"file_url": "ftp://x/a.csv"}, 400, "Invalid Request"),
        ({"callback_url": "not a url"}, 400, "Invalid Request"),
        ({"expiry_time": 0}, 400, "Invalid Request"),
        ({"expiry_time": None}, 400, "Invalid Request"),
        ({"emails": ["nobody"]}, 400, "Invalid Request"),
        ({"name": "Taken"}, 409, "Resource not created"),
    ],
)
def test_create_refusals(
    emulator: EmulatorClient, file_server: FileServer, change: dict[str, Any], status: int,
    title: str,
) -> None:  # fmt: skip
    file_server.serve("a.csv", b"u1\n")
    assert emulator.send(cohort_body(["u"], cohort_id="c1", cohort_name="Taken"))[0] == 200
    request = {k: v for k, v in {**body(file_server, "New", "a.csv"), **change}.items()
               if v is not None}  # fmt: skip
    got, doc = file_request(emulator, "create", request)
    assert (got, doc["title"]) == (status, title), doc
    if status == 409:
        assert doc["description"] == "Name already exists : Taken"


@pytest.mark.parametrize("content_type", ["text/csv", "application/json", "text/plain"])
def test_documented_content_types_are_accepted(
    emulator: EmulatorClient, file_server: FileServer, content_type: str
) -> None:
    file_server.serve("a.csv", b"u1\n")
    request = body(file_server, "CT", "a.csv")
    assert file_request(emulator, "create", request, **{"Content-Type": content_type})[0] == 202
    other = body(file_server, "CT2", "a.csv")
    assert file_request(emulator, "create", other, **{"Content-Type": "text/html"})[0] == 415


@pytest.mark.parametrize("operation", ["add", "remove", "replace"])
def test_changes_find_only_file_segments(
    emulator: EmulatorClient, file_server: FileServer, operation: str
) -> None:
    """A Cohort Sync or filter segment of that name is not a file segment: 404."""
    file_server.serve("a.csv", b"u1\n")
    assert emulator.send(cohort_body(["u"], cohort_id="c1", cohort_name="Synced"))[0] == 200
    request = body(file_server, "Synced", "a.csv")
    status, doc = file_request(emulator, operation, request)
    assert (status, doc["title"]) == (404, "Entity Not Found")
    status, doc = file_request(emulator, operation, {**request, "cs_id": "0" * 24})
    assert status == 404 and "0" * 24 in doc["description"]


def test_cohort_sync_cannot_touch_a_file_segment(
    emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("a.csv", b"u1\n")
    _, doc = file_request(emulator, "create", body(file_server, "Loaded", "a.csv"))
    file_server.wait_for_callbacks(1)
    for action in ("add_members", "remove_members"):
        status, answer = emulator.send(
            cohort_body(["u1", "u2"], action=action, cohort_id="new", cohort_name="Loaded")
        )
        assert status == 400 and answer["error"]["attribute"] == "cohort_name"
    assert members(emulator, doc["cs_id"]) == {"u1"}
    assert "new" not in emulator.cohorts()


def test_file_operation_quotas_10_an_hour_100_a_day(file_server: FileServer) -> None:
    clock = FakeClock()
    knobs = Knobs(api_key=API_KEY, active_segments_limit=10_000)
    config = EmulatorConfig(workspace_id=WORKSPACE_ID, knobs=knobs, clock=clock)
    file_server.serve("a.csv", 404)  # the quota is about requests, not results
    with EmulatorThread(config) as running:
        emulator = EmulatorClient(running.url, WORKSPACE_ID, API_KEY)
        admitted = 0
        for hour in range(10):
            for _ in range(10):  # create and replace alternate: replace counts too (§8.6)
                operation = "create" if admitted % 2 == 0 else "replace"
                request = body(file_server, f"s{admitted - admitted % 2}", "a.csv")
                status, doc = file_request(emulator, operation, request)
                assert status == 202, (hour, admitted, doc)
                admitted += 1
            status, doc = file_request(emulator, "add", body(file_server, "s0", "a.csv"))
            limit = "100 per day" if admitted == 100 else "10 per hour"
            assert status == 429 and limit in doc["description"], (hour, doc)
            clock.advance(3600)
        clock.advance(24 * 3600 - 10 * 3600)  # the first hour's operations leave the day
        assert file_request(emulator, "add", body(file_server, "s0", "a.csv"))[0] == 202


# --- v1 CSV (§6) ------------------------------------------------------------------------


def v1_body(files: FileServer, name: str, csv: str, **change: Any) -> dict[str, Any]:
    doc = {
        "appId": WORKSPACE_ID,
        "attribute": "ID",
        "attributeType": "string",
        "segName": name,
        "csvUrl": files.url(csv),
        "callback": f"{files.base}/v1-callback",
    }
    signed = f"{doc['appId']}|{name}|{change.pop('secret', API_KEY)}"
    doc["signature"] = hashlib.sha256(signed.encode()).hexdigest()
    return {k: v for k, v in {**doc, **change}.items() if v is not None}


def v1(emulator: EmulatorClient, doc: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    status, _, answer = emulator.request("POST", "/csv_segment", orjson.dumps(doc), headers)
    return status, answer


def test_v1_creates_asynchronously_and_calls_back_in_its_shape(
    emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("a.csv", b"u1\nu2\n")
    status, doc = v1(emulator, v1_body(file_server, "Legacy", "a.csv"))
    assert status == 200 and doc["status"] == 200 and doc["segment_name"] == "Legacy"
    result = file_server.wait_for_callbacks(1)[0]
    assert result == {
        "path": "/v1-callback",
        "status": 201,
        "values_found": 2,
        "values_processed": 2,
        "user_count": 2,
        "request_id": doc["request_id"],
        "segment_name": "Legacy",
    }
    status, doc = v1(emulator, v1_body(file_server, "Legacy", "a.csv"))
    assert (status, doc["error_message"]) == (409, "duplicate request")
    assert doc["segment_name"] == "Legacy"
    assert "request_id" in doc


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"appId": None}, 400, "Bad Value for appId"),
        ({"appId": "someone-else"}, 400, "Bad Value for appId"),
        ({"attributeType": "double"}, 400, "Bad Value for attributeType"),
        ({"csvUrl": "s3://bucket/a.csv"}, 400, "Bad Value for csvUrl"),
        ({"callback": None}, 400, "Bad Value for callback"),
        ({"segName": " "}, 400, "Bad Value for segName"),
        ({"secret": "wrong-secret"}, 401, "Unauthorized"),
        ({"signature": "ABC"}, 401, "Unauthorized"),
    ],
)
def test_v1_refusals(
    emulator: EmulatorClient, file_server: FileServer, change: dict[str, Any], status: int,
    message: str,
) -> None:  # fmt: skip
    got, doc = v1(emulator, v1_body(file_server, "L", "a.csv", **change))
    assert (got, doc["status"], doc["error_message"]) == (status, status, message)
    time.sleep(0.05)
    assert file_server.callbacks() == []


def test_v1_failed_download_calls_back_400(
    emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("gone.csv", 404)
    _, doc = v1(emulator, v1_body(file_server, "Gone", "gone.csv"))
    result = file_server.wait_for_callbacks(1)[0]
    assert result["status"] == 400 and result["request_id"] == doc["request_id"]
    assert result["error_message"].startswith("File download failed.")
