"""streamer/classify.py: a Cohort Sync response -> what the sender does next."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.classify import (
    REQUEST_LEVEL_ATTRIBUTES,
    Outcome,
    Verdict,
    api_message,
    classify,
    parse_retry_after,
)


def error_body(message: str | None = None, attribute: str | None = None, **extra: object) -> bytes:
    error: dict[str, object] = {"type": "SomeError", "request_id": "r1", **extra}
    if message is not None:
        error["message"] = message
    if attribute is not None:
        error["attribute"] = attribute
    return orjson.dumps({"status": "fail", "error": error})


OK_BODY = orjson.dumps(
    {"status": "success", "message": "Your request has been accepted and will be processed soon."}
)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_accepted(status: int) -> None:
    assert classify(status, OK_BODY, None) == Outcome(Verdict.ACCEPTED, "")


def test_2xx_with_any_body_is_accepted() -> None:
    assert classify(200, b"not json", "5").verdict is Verdict.ACCEPTED


def test_429_retries_with_retry_after() -> None:
    out = classify(429, error_body("Rate limits for customers exceeded."), "7")
    assert out == Outcome(Verdict.RETRY, "rate_limited", 7.0)


def test_429_without_retry_after() -> None:
    assert classify(429, b"", None) == Outcome(Verdict.RETRY, "rate_limited", None)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408])
def test_5xx_and_408_retry_as_server_error(status: int) -> None:
    out = classify(status, error_body("An unexpected error"), "3")
    assert out == Outcome(Verdict.RETRY, "server_error", 3.0)


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_is_auth_with_the_api_message(status: int) -> None:
    out = classify(status, error_body("App Secret key mismatch."), None)
    assert out.verdict is Verdict.AUTH
    assert str(status) in out.cause
    assert "App Secret key mismatch." in out.cause


def test_auth_with_a_non_json_body_keeps_some_of_it() -> None:
    out = classify(401, b"<html>" + b"x" * 1000, None)
    assert out.verdict is Verdict.AUTH
    assert "<html>" in out.cause
    assert len(out.cause) < 300


def test_413_splits() -> None:
    out = classify(413, error_body("Payload can not exceed 128KB"), None)
    assert out == Outcome(Verdict.SPLIT, "too_large")


@pytest.mark.parametrize(
    "status",
    [409, 415, 422, 499, 100, 101, 103, 199, 0, 99, 600, 601, 799, 999],
)
def test_other_4xx_1xx_and_statuses_outside_http_retry_so_nothing_is_lost(status: int) -> None:
    out = classify(status, error_body("whatever", attribute="cohort_name"), "5")
    assert out.verdict is Verdict.RETRY
    assert out.cause == "server_error"


@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 305, 306, 307, 308, 350, 399])
def test_every_3xx_is_a_redirect_naming_the_location(status: int) -> None:
    out = classify(status, OK_BODY, "1", "https://example.com/landing")
    assert out.verdict is Verdict.WRONG_ENDPOINT
    assert out.cause == f"HTTP {status} to https://example.com/landing"
    assert out.retry_after is None


def test_a_redirect_without_location_says_so() -> None:
    assert classify(302, b"", None).cause == "HTTP 302 to (no Location header)"


def test_only_2xx_is_ever_accepted() -> None:
    accepted = {s for s in range(0, 1000) if classify(s, OK_BODY, None).verdict is Verdict.ACCEPTED}
    assert accepted == set(range(200, 300))


# The table in classify.py's docstring, one representative of each row.
TABLE = [
    (200, Verdict.ACCEPTED, ""),
    (302, Verdict.WRONG_ENDPOINT, "HTTP 302 to (no Location header)"),
    (401, Verdict.AUTH, "HTTP 401: whatever"),
    (403, Verdict.AUTH, "HTTP 403: whatever"),
    (413, Verdict.SPLIT, "too_large"),
    (429, Verdict.RETRY, "rate_limited"),
    (408, Verdict.RETRY, "server_error"),
    (503, Verdict.RETRY, "server_error"),
    (404, Verdict.WRONG_ENDPOINT, "HTTP 404: no Cohort Sync API at this URL"),
    (405, Verdict.WRONG_ENDPOINT, "HTTP 405: no Cohort Sync API at this URL"),
    (421, Verdict.WRONG_ENDPOINT, "HTTP 421: no Cohort Sync API at this URL"),
    (409, Verdict.RETRY, "server_error"),
    (415, Verdict.RETRY, "server_error"),
    (101, Verdict.RETRY, "server_error"),
    (600, Verdict.RETRY, "server_error"),
]


@pytest.mark.parametrize(("status", "verdict", "cause"), TABLE)
def test_the_documented_table(status: int, verdict: Verdict, cause: str) -> None:
    out = classify(status, error_body("whatever"), None)
    assert (out.verdict, out.cause) == (verdict, cause)


# --- 400 ---


@pytest.mark.parametrize(
    "attribute",
    ["action", "partner", "parameters", "cohort_id", "cohort_name", "cohort_description"],
)
def test_400_about_the_request_as_a_whole_rejects_all(attribute: str) -> None:
    message = f"{attribute} is not found in the payload"
    out = classify(400, error_body(message, attribute, type="MissingAttributeError"), None)
    assert out == Outcome(Verdict.REJECT_ALL, message)


def test_request_level_attributes_are_exactly_the_envelope_fields() -> None:
    assert {
        "action",
        "partner",
        "parameters",
        "cohort_id",
        "cohort_name",
        "cohort_description",
    } == REQUEST_LEVEL_ATTRIBUTES


def test_400_malformed_json_rejects_all() -> None:
    message = "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8."
    out = classify(400, error_body(message, type="Malformed JSON"), None)
    assert out == Outcome(Verdict.REJECT_ALL, message)


@pytest.mark.parametrize(
    "body",
    [
        error_body("uid u7 can not be processed", "members"),
        error_body("members[3].uid must be a non-empty string", "members"),
        error_body("something about a member"),
        error_body("Cohort name bad", attribute="COHORT_NAME"),  # not an exact attribute
    ],
)
def test_other_400_bisects(body: bytes) -> None:
    out = classify(400, body, None)
    assert out.verdict is Verdict.BISECT
    assert out.cause == orjson.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b'{"error": "flat string"}',
        b'{"error": {"message": 5, "attribute": 7}}',
        b'{"error": null}',
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_400_with_an_unusable_body_bisects_with_a_generic_cause(body: bytes) -> None:
    out = classify(400, body, None)
    assert out.verdict is Verdict.BISECT
    assert out.cause == "HTTP 400"


def test_400_message_is_truncated() -> None:
    out = classify(400, error_body("m" * 5000, "members"), None)
    assert out.cause == "m" * 500


def test_api_message() -> None:
    assert api_message(error_body("hello")) == "hello"
    assert api_message(b"plain text") == "plain text"
    assert api_message(b"\xff" * 10) == "\ufffd" * 10
    assert len(api_message(b"x" * 1000)) == 200


# --- Retry-After ---


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("120", 120.0),
        (None, None),
        ("", None),
        ("-1", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # the HTTP-date form is treated as absent
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_parse_retry_after_never_raises_and_is_never_negative(header: str) -> None:
    value = parse_retry_after(header)
    assert value is None or (value >= 0 and not math.isnan(value))


@given(
    st.integers(min_value=-1, max_value=1000),
    st.binary(max_size=200),
    st.text(max_size=10),
    st.none() | st.text(max_size=20),
)
@settings(max_examples=300, deadline=None)
def test_classify_is_total(status: int, body: bytes, header: str, location: str | None) -> None:
    out = classify(status, body, header, location)
    assert isinstance(out.verdict, Verdict)
    assert isinstance(out.cause, str)
    if out.retry_after is not None:
        assert out.verdict is Verdict.RETRY
        assert out.retry_after >= 0
