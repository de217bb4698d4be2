"""v3 filter segments in the emulator: create/update, the §5.2 grammar and the §5.3 catalogue."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest

from streamer.emulator import EmulatorConfig, EmulatorThread, Knobs
from streamer.emulator.filters import MAX_FILTERS
from tests.fixtures.emulator import (
    API_KEY,
    WORKSPACE_ID,
    EmulatorClient,
    FakeClock,
    auth_headers,
    cohort_body,
)


def attribute(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "filter_type": "user_attributes",
        "name": "City",
        "data_type": "string",
        "operator": "in",
        "value": ["Pune", "Delhi"],
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not None}


def action(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "filter_type": "actions",
        "action_name": "MOE_EMAIL_SENT",
        "executed": True,
        "execution": {"type": "atleast", "count": 1},
        "primary_time_range": {
            "type": "between",
            "value_type": "absolute",
            "period_unit": "days",
            "value": "2023-02-15T00:00:00.000Z",
            "value1": "2023-02-24T23:59:59.999Z",
        },
        "attributes": {"filter_operator": "and", "filters": []},
    }
    item.update(overrides)
    return item


def time_range(kind: str, value: str, **overrides: Any) -> dict[str, Any]:
    value_type = "relative_past" if kind == "inTheLast" else "absolute"
    item = {"type": kind, "value_type": value_type, "value": value, "period_unit": "days"}
    return {**item, **overrides}


def synced_segment(emulator: EmulatorClient) -> str:
    body = cohort_body(["u"], cohort_id="c1", cohort_name="Synced")
    assert emulator.send(body)[0] == 200
    return str(emulator.cohorts()["c1"]["segment_id"])


def group(*filters: dict[str, Any], operator: str = "and") -> dict[str, Any]:
    return {"filter_operator": operator, "filters": list(filters)}


def v3(
    emulator: EmulatorClient, method: str, path: str, body: Any, **headers: str
) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    status, _, doc = emulator.request(method, path, raw, {**auth_headers(), **headers})
    return status, doc


def create(emulator: EmulatorClient, name: str, filters: dict[str, Any]) -> tuple[int, Any]:
    body = {"name": name, "included_filters": filters}
    return v3(emulator, "POST", "/v3/custom-segments", body)


def update(emulator: EmulatorClient, segment_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    return v3(emulator, "PATCH", f"/v3/custom-segments/{segment_id}", body)


def test_create_answers_201_with_the_segment_object(emulator: EmulatorClient) -> None:
    status, doc = create(emulator, "Pune or Delhi", group(attribute(), action()))
    assert status == 201, doc
    assert doc["type"] == "custom_segment" and isinstance(doc["response_id"], str)
    segment = doc["data"]
    assert set(segment) == {
        *("name", "id", "created_time", "updated_time", "type", "source", "description"),
        "included_filters",
    }
    assert re.fullmatch(r"[0-9a-f]{24}", segment["id"])
    assert (segment["type"], segment["source"]) == ("ELASTIC_SEARCH", "API")
    first = segment["included_filters"]["filters"][0]
    assert (first["negate"], first["case_sensitive"]) == (False, False)  # defaults filled in
    assert "City in" in segment["description"]

    status, listed = v3(emulator, "GET", "/v3/custom-segments?name=Pune%20or%20Delhi", None)
    assert [s["id"] for s in listed["data"]] == [segment["id"]]
    status, got = v3(emulator, "GET", f"/v3/custom-segments/{segment['id']}", None)
    assert got["data"][0]["included_filters"] == segment["included_filters"]


def test_update_replaces_name_and_definition(emulator: EmulatorClient) -> None:
    _, doc = create(emulator, "Old", group(attribute()))
    segment_id = doc["data"]["id"]
    new_filters = group(attribute(value=["Goa"]))
    body = {"name": "New", "included_filters": new_filters, "updated_by": "admin@example.com"}
    status, doc = update(emulator, segment_id, body)
    assert status == 200, doc
    assert (doc["data"]["id"], doc["data"]["name"]) == (segment_id, "New")
    assert doc["data"]["included_filters"]["filters"][0]["value"] == ["Goa"]
    # the same definition under its own id is no conflict; another name is kept when omitted
    status, doc = update(emulator, segment_id, {"included_filters": new_filters})
    assert (status, doc["data"]["name"]) == (200, "New")


VALID_ATTRIBUTES = [
    attribute(),
    attribute(data_type="bool", operator="is", value=True),
    attribute(data_type="bool", operator="exists", value=None),
    attribute(data_type="double", operator="between", value=1, value1=2.5),
    attribute(data_type="double", operator="lessThan", value=3),
    attribute(data_type="string", operator="contains", value="x", case_sensitive=True),
    attribute(data_type="datetime", operator="on", value="2024-01-01T00:00:00.000Z"),
    attribute(data_type="datetime", operator="inTheLast", value=7, negate=True),
    attribute(data_type="datetime", operator="today", value=None),
]


@pytest.mark.parametrize("item", VALID_ATTRIBUTES, ids=lambda i: f"{i['data_type']}{i['operator']}")
def test_every_data_type_operator_pair_of_the_table_is_accepted(
    emulator: EmulatorClient, item: dict[str, Any]
) -> None:
    status, doc = create(emulator, "ok", group(item))
    assert status == 201, doc


TIME_RANGES = [
    time_range("inTheLast", "7"),
    time_range("on", "2024-01-01T00:00:00Z"),
    time_range("before", "2024-01-01T00:00:00", period_unit="weeks"),
    time_range("after", "2024-01-01T00:00:00.000+05:30", period_unit="months"),
]


@pytest.mark.parametrize("when", TIME_RANGES, ids=lambda t: str(t["type"]))
def test_action_time_ranges_are_accepted(emulator: EmulatorClient, when: dict[str, Any]) -> None:
    status, doc = create(emulator, "acted", group(action(primary_time_range=when)))
    assert status == 201, doc


DAY = "2023-02-15T00:00:00Z"
INVALID = [
    ("no filters", group(), "filters"),
    ("bad group operator", group(attribute(), operator="xor"), "filter_operator"),
    ("unknown filter type", group(attribute(filter_type="segments")), "filter_type"),
    ("unknown key", group(attribute(colour="red")), "colour"),
    ("operator not for type", group(attribute(data_type="bool", operator="in")), "operator"),
    ("unknown data type", group(attribute(data_type="int")), "data_type"),
    ("in needs an array", group(attribute(value="Pune")), "value"),
    ("empty array", group(attribute(value=[])), "value"),
    ("double wants numbers", group(attribute(data_type="double", value=["1"])), "value[0]"),
    (
        "between without value1",
        group(attribute(data_type="double", operator="between", value=1)),
        "value1",
    ),
    (
        "between reversed",
        group(attribute(data_type="double", operator="between", value=5, value1=1)),
        "value1",
    ),
    ("value1 outside between", group(attribute(value1="x")), "value1"),
    ("exists with a value", group(attribute(operator="exists", value="x")), "value"),
    (
        "datetime not ISO",
        group(attribute(data_type="datetime", operator="before", value="yesterday")),
        "value",
    ),
    ("true for on", group(attribute(data_type="datetime", operator=True, value=DAY)), '"on"'),
    ("negate not bool", group(attribute(negate="no")), "negate"),
    ("executed missing", group(action(executed=None)), "executed"),
    ("bad execution", group(action(execution={"type": "often", "count": 1})), "execution.type"),
    ("atleast zero", group(action(execution={"type": "atleast", "count": 0})), "execution.count"),
    (
        "relative with absolute",
        group(action(primary_time_range=time_range("inTheLast", "7", value_type="absolute"))),
        "value_type",
    ),
    (
        "relative not a number",
        group(action(primary_time_range=time_range("inTheLast", "week"))),
        "value",
    ),
    ("between without end", group(action(primary_time_range=time_range("between", DAY))), "value1"),
    (
        "bad period",
        group(action(primary_time_range=time_range("on", DAY, period_unit="years"))),
        "period_unit",
    ),
    ("range type true", group(action(primary_time_range=time_range(True, DAY))), '"on"'),
    ("not an object", [attribute()], "included_filters"),
]


@pytest.mark.parametrize(("case", "filters", "named"), INVALID, ids=[c[0] for c in INVALID])
def test_grammar_violations_are_400_naming_the_place(
    emulator: EmulatorClient, case: str, filters: Any, named: str
) -> None:
    # `executed=None` drops the key from the action filter
    filters = copy.deepcopy(filters)
    for item in filters.get("filters", []) if isinstance(filters, dict) else []:
        for key in [k for k, v in item.items() if v is None]:
            del item[key]
    status, doc = create(emulator, "bad", filters)
    assert status == 400, doc
    assert doc["error"]["code"] == "Invalid Request"
    assert named in doc["error"]["message"]
    # an update is held to the same grammar
    _, made = create(emulator, "good", group(attribute()))
    status, doc = update(emulator, made["data"]["id"], {"included_filters": filters})
    assert status == 400 and named in doc["error"]["message"]


@pytest.mark.parametrize("name", ["", "   ", "<b>x</b>", 7, None])
def test_bad_names_are_400(emulator: EmulatorClient, name: Any) -> None:
    status, doc = create(emulator, name, group(attribute()))
    assert (status, doc["error"]["code"]) == (400, "Invalid Request")


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'{"name": "x", "included_filters": {}, "extra": 1}']
)
def test_malformed_bodies_are_400(emulator: EmulatorClient, body: bytes) -> None:
    status, doc = v3(emulator, "POST", "/v3/custom-segments", body)
    assert status == 400 and doc["error"]["code"] in ("Invalid request", "Invalid Request")


def test_duplicate_name_and_duplicate_definition_are_409(emulator: EmulatorClient) -> None:
    _, held = create(emulator, "Holder", group(attribute(), action()))
    status, doc = create(emulator, "Holder", group(attribute(value=["Goa"])))
    assert status == 409 and "same name" in doc["error"]["message"]
    # same definition, other key order and explicit defaults: still the same definition
    same = group(attribute(negate=False), action())
    same["filters"][0] = dict(reversed(list(same["filters"][0].items())))
    status, doc = create(emulator, "Other name", same)
    assert status == 409, doc
    assert doc["error"]["existing_cs_name"] == "Holder"
    assert doc["error"]["existing_cs_id"] == held["data"]["id"]
    # an update onto another segment's name or definition is refused the same way
    _, other = create(emulator, "Other", group(attribute(value=["Goa"])))
    status, doc = update(emulator, other["data"]["id"], {"included_filters": same})
    assert (status, doc["error"]["existing_cs_id"]) == (409, held["data"]["id"])
    body = {"name": "Holder", "included_filters": group(attribute(value=["Goa"]))}
    assert update(emulator, other["data"]["id"], body)[0] == 409


def test_update_refuses_unknown_file_cohort_and_archived_segments(
    emulator: EmulatorClient,
) -> None:
    body = {"included_filters": group(attribute())}
    status, doc = update(emulator, "0" * 24, body)
    assert (status, doc["error"]["code"]) == (404, "Entity Not Found")

    synced = synced_segment(emulator)
    status, doc = update(emulator, synced, body)
    assert (status, doc["error"]["code"]) == (403, "Forbidden operation")

    _, made = create(emulator, "To archive", group(attribute(value=["Goa"])))
    archive = {"name": "To archive", "cs_id": made["data"]["id"]}
    hdrs = {k: v for k, v in auth_headers().items() if k != "MOE-APPKEY"}
    emulator.request("PATCH", "/v2/custom-segments/archive", orjson.dumps(archive), hdrs)
    status, doc = update(emulator, made["data"]["id"], body)
    assert status == 403


@pytest.mark.parametrize("email", ["admin", "a@b", 5])
def test_updated_by_must_be_an_email(emulator: EmulatorClient, email: Any) -> None:
    _, made = create(emulator, "x", group(attribute()))
    body = {"included_filters": group(attribute()), "updated_by": email}
    assert update(emulator, made["data"]["id"], body)[0] == 400


def test_nesting_and_size_limits_are_413(emulator: EmulatorClient) -> None:
    nested = action(attributes=group(action()))
    status, doc = create(emulator, "deep", group(nested))
    assert (status, doc["error"]["code"]) == (413, "Query has too many nesting levels")
    many = group(*[attribute(value=[f"city-{i}"]) for i in range(MAX_FILTERS + 1)])
    status, doc = create(emulator, "wide", many)
    assert (status, doc["error"]["code"]) == (413, "Query length limit exceeded")
    huge = group(attribute(value=["x" * 70_000]))
    assert create(emulator, "huge", huge)[0] == 413
    assert create(emulator, "fits", group(*many["filters"][:MAX_FILTERS]))[0] == 201


@pytest.mark.parametrize("limit", [1, 3])
def test_active_segments_cap_counts_every_type_and_archiving_frees_a_slot(
    emulator: EmulatorClient, limit: int
) -> None:
    emulator.configure(active_segments_limit=limit)
    synced_segment(emulator)
    made = [create(emulator, f"s{i}", group(attribute(value=[str(i)]))) for i in range(limit)]
    assert [status for status, _ in made] == [201] * (limit - 1) + [429]
    doc = made[-1][1]
    assert doc["error"]["message"] == "Total active segments limit breached. Request rejected!"
    assert (doc["error"]["actual_count"], doc["error"]["limit"]) == (limit + 1, limit)
    hdrs = {k: v for k, v in auth_headers().items() if k != "MOE-APPKEY"}
    emulator.request("PATCH", "/v2/custom-segments/archive", b'{"name": "Synced"}', hdrs)
    assert create(emulator, "after archive", group(attribute(value=["z"])))[0] == 201
    # the slot is taken again: unarchiving would exceed the cap
    status, _, doc = emulator.request(
        "PATCH", "/v2/custom-segments/unarchive", b'{"name": "Synced"}', hdrs
    )
    assert (status, doc["title"]) == (429, "Too Many Requests")


@pytest.mark.parametrize(
    ("operation", "per_minute", "per_hour", "per_day"),
    [("list", 50, 200, 1000), ("get", 100, 1000, 4000), ("create", 50, 200, 1000)],
)
def test_rate_quotas_per_minute_hour_and_day(
    operation: str, per_minute: int, per_hour: int, per_day: int
) -> None:
    """Each window refuses exactly its limit + 1st call; a refused call is not counted."""
    clock = FakeClock()
    knobs = Knobs(api_key=API_KEY, active_segments_limit=10_000)
    config = EmulatorConfig(workspace_id=WORKSPACE_ID, knobs=knobs, clock=clock)
    with EmulatorThread(config) as running:
        emulator = EmulatorClient(running.url, WORKSPACE_ID, API_KEY)
        paths = {"list": "/v3/custom-segments", "get": "/v3/custom-segments/" + "0" * 24}
        admitted = 0

        def call() -> tuple[int, Any]:
            if operation == "create":
                return create(emulator, f"n{admitted}", group(attribute(value=[str(admitted)])))
            return v3(emulator, "GET", paths[operation], None)

        for limit, minutes in [(per_minute, 1), (per_hour, 60), (per_day, 1440)]:
            while admitted < limit:
                status, doc = call()
                if status != 429:
                    admitted += 1
                    continue
                # a shorter window is full: it must be exactly at its limit; move past it
                message = doc["error"]["message"]
                shorter = per_minute if message.endswith("/1 mins") else per_hour
                assert admitted % shorter == 0 and shorter < limit, (admitted, message)
                clock.advance(60 if shorter == per_minute else 3600)
            status, doc = call()
            assert status == 429, (operation, admitted)
            assert doc["error"]["message"].endswith(f"Current limit: {limit}/{minutes} mins")
