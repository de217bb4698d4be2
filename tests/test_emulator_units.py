"""Pure parts of the emulator: body validation, auth parsing, sliding window, faults, knobs."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest

from streamer.emulator import Knobs, auth
from streamer.emulator.config import knobs_to_json, update_knobs
from streamer.emulator.errors import ApiError
from streamer.emulator.faults import Fault, FaultInjector
from streamer.emulator.ratelimit import RateLimiter, SlidingWindow
from streamer.emulator.validation import (
    CohortRequest,
    is_json_content_type,
    parse_cohort_request,
)
from tests.fixtures.emulator import cohort_body


def _parse(doc: Any) -> CohortRequest | ApiError:
    return parse_cohort_request(orjson.dumps(doc))


def test_valid_body_parses() -> None:
    body = cohort_body(["a", "b", "a"], description="desc")
    parsed = _parse(body)
    assert parsed == CohortRequest(
        "add_members", "cohort-streamer", "cohort-1", "Cohort One", "desc", ["a", "b", "a"]
    )


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"\xff\xfe{}", b'{"a": "\xc3\x28"}', b"[]", b'"x"', b"NaN"],
)
def test_malformed_json(raw: bytes) -> None:
    result = parse_cohort_request(raw)
    assert isinstance(result, ApiError)
    assert (result.status, result.type, result.attribute) == (400, "Malformed JSON", None)


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    body = copy.deepcopy(cohort_body())
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("path", "attribute"),
    [
        (("action",), "action"),
        (("partner",), "partner"),
        (("parameters",), "parameters"),
        (("parameters", "cohort_name"), "cohort_name"),
        (("parameters", "cohort_id"), "cohort_id"),
        (("parameters", "members"), "members"),
    ],
)
def test_missing_attribute(path: tuple[str, ...], attribute: str) -> None:
    result = _parse(_without(path))
    assert isinstance(result, ApiError)
    assert result.type == "MissingAttributeError"
    assert result.attribute == attribute
    assert result.message == f"{attribute} is not found in the payload"


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(cohort_body())
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


INVALID_CASES = [
    (("action",), "add", "action"),
    (("action",), 1, "action"),
    (("partner",), "", "partner"),
    (("partner",), None, "partner"),
    (("parameters",), [], "parameters"),
    (("parameters", "cohort_id"), "", "cohort_id"),
    (("parameters", "cohort_id"), 42, "cohort_id"),
    (("parameters", "cohort_name"), "", "cohort_name"),
    (("parameters", "cohort_name"), ".hidden", "cohort_name"),
    (("parameters", "cohort_description"), 5, "cohort_description"),
    (("parameters", "cohort_description"), None, "cohort_description"),
    (("parameters", "members"), [], "members"),
    (("parameters", "members"), {"uid": "a"}, "members"),
    (("parameters", "members"), [{"uid": "a"}, "b"], "members"),
    (("parameters", "members"), [{"uid": "a"}, {"id": "b"}], "members"),
    (("parameters", "members"), [{"uid": ""}], "members"),
    (("parameters", "members"), [{"uid": 7}], "members"),
]


@pytest.mark.parametrize(("path", "value", "attribute"), INVALID_CASES)
def test_invalid_attribute(path: tuple[str, ...], value: Any, attribute: str) -> None:
    result = _parse(_with(path, value))
    assert isinstance(result, ApiError)
    assert (result.status, result.type, result.attribute) == (
        400,
        "InvalidAttributeError",
        attribute,
    )


@pytest.mark.parametrize("char", list('|*?\\:<>=$"'))
def test_cohort_name_forbidden_characters(char: str) -> None:
    result = _parse(_with(("parameters", "cohort_name"), f"name{char}x"))
    assert isinstance(result, ApiError)
    assert result.attribute == "cohort_name"


def test_member_error_names_the_index() -> None:
    result = _parse(_with(("parameters", "members"), [{"uid": "a"}, {"uid": "b"}, {"uid": ""}]))
    assert isinstance(result, ApiError)
    assert "members[2]" in result.message


def test_cohort_name_allows_other_punctuation() -> None:
    assert isinstance(
        _parse(_with(("parameters", "cohort_name"), "a.b-c_d (e) / f!")), CohortRequest
    )


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("text/plain", False),
        ("application/jsonx", False),
        (None, False),
    ],
)
def test_content_type(header: str | None, ok: bool) -> None:
    assert is_json_content_type(header) is ok


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_parse_basic() -> None:
    assert auth.parse_basic(_basic("w", "k:with:colons")) == ("w", "k:with:colons")
    assert auth.parse_basic(None) is None
    assert auth.parse_basic("Bearer abc") is None
    assert auth.parse_basic("Basic !!!") is None
    assert auth.parse_basic("Basic " + base64.b64encode(b"nocolon").decode()) is None


def test_cohort_sync_auth_order() -> None:
    good = {"Authorization": _basic("W", "K"), "MOE-APPKEY": "W"}
    assert auth.check_cohort_sync(good, "W", "K") is None
    mismatch = auth.check_cohort_sync({**good, "MOE-APPKEY": "X"}, "W", "K")
    assert mismatch is not None and mismatch.type == "Authentication Mismatch"
    # Same wrong workspace in both places: the pair is checked, not the header.
    wrong = {"Authorization": _basic("X", "K"), "MOE-APPKEY": "X"}
    secret = auth.check_cohort_sync(wrong, "W", "K")
    assert secret is not None and secret.message.startswith("App Secret key mismatch")


def test_sliding_window_boundaries() -> None:
    window = SlidingWindow(2.0)
    for t in (0.0, 0.5, 1.0):
        window.add(t)
    assert window.count(1.99) == 3
    assert window.count(2.0) == 2  # an event exactly one window old has left it
    assert window.peak == 3


def test_rate_limiter_retry_after() -> None:
    limiter = RateLimiter(limit=2, seconds=10.0)
    limiter.record_accepted(0.0)
    limiter.record_accepted(3.0)
    assert not limiter.allows(5.0)
    assert limiter.retry_after_seconds(5.0) == 5  # the event at 0 leaves at 10
    assert limiter.allows(10.0)


def test_fault_sequence_is_seeded() -> None:
    def run(seed: int) -> list[Fault]:
        faults = FaultInjector(seed)
        return [faults.decide(0.3, 0.3) for _ in range(200)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert {Fault.NONE, Fault.SERVER_ERROR, Fault.RATE_LIMITED} == set(run(1))


def test_fault_ratios_at_extremes() -> None:
    faults = FaultInjector(0)
    assert {faults.decide(0.0, 0.0) for _ in range(50)} == {Fault.NONE}
    assert {faults.decide(1.0, 0.0) for _ in range(50)} == {Fault.SERVER_ERROR}
    assert {faults.decide(0.0, 1.0) for _ in range(50)} == {Fault.RATE_LIMITED}


def test_update_knobs() -> None:
    knobs = update_knobs(Knobs(), {"latency_ms": 5, "refuse_uids": ["b", "a"], "fail_auth": 403})
    assert knobs.latency_ms == 5.0
    assert knobs.refuse_uids == frozenset({"a", "b"})
    assert knobs_to_json(knobs)["refuse_uids"] == ["a", "b"]
    assert update_knobs(knobs, {"fail_auth": None}).fail_auth is None


@pytest.mark.parametrize(
    "patch",
    [
        {"nope": 1},
        {"latency_ms": "5"},
        {"max_payload_bytes": True},
        {"fail_5xx_ratio": 1.5},
        {"fail_5xx_ratio": 0.6, "fail_429_ratio": 0.6},
        {"fail_auth": 500},
        {"refuse_uids": [1]},
        {"rate_window_seconds": 0},
        {"api_key": ""},
    ],
)
def test_update_knobs_refuses(patch: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        update_knobs(Knobs(), patch)
