"""streamer/decode.py: every rejection reason, the configurable schema, and hostile input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.config import EventsConfig
from streamer.decode import (
    MAX_ID_CHARS,
    REASONS,
    Change,
    Decoder,
    Rejection,
    parse_ts,
)
from tests.fixtures.bodies import member_bytes

FORBIDDEN = '|*?\\:<>=$"'
MAX_EVENT_BYTES = 65536


def decoder(max_event_bytes: int = MAX_EVENT_BYTES, **schema: Any) -> Decoder:
    return Decoder(EventsConfig(**schema), max_event_bytes)


_ABSENT = object()


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "action": "enter",
        "cohort_id": "c-1",
        "cohort_name": "Cohort One",
        "uid": "u-1",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _ABSENT}


def decode(obj: Any, dec: Decoder | None = None) -> Change | Rejection:
    return (dec or decoder()).decode(orjson.dumps(obj))


def rejected(result: Change | Rejection, reason: str) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    assert result.detail
    return result


# --- valid events ---


def test_enter_is_an_add_with_every_field() -> None:
    got = decode(event(cohort_description="d", ts=1_700_000_000_000))
    assert got == Change(True, "c-1", "Cohort One", "d", "u-1", 1_700_000_000_000)


def test_exit_is_a_remove() -> None:
    got = decode(event(action="exit"))
    assert isinstance(got, Change)
    assert got.add is False
    assert got.ts_ms is None
    assert got.cohort_description is None


def test_cohort_name_defaults_to_cohort_id() -> None:
    got = decode(event(cohort_name=_ABSENT, cohort_id="seg-42"))
    assert isinstance(got, Change)
    assert got.cohort_name == "seg-42"


def test_null_cohort_name_is_absent_and_defaults_to_cohort_id() -> None:
    # null means absent everywhere else (ts, cohort_description, required fields)
    got = decode(event(cohort_name=None, cohort_id="seg-42"))
    assert isinstance(got, Change)
    assert got.cohort_name == "seg-42"


def test_cohort_id_with_forbidden_char_is_refused_when_it_becomes_the_name() -> None:
    rejected(decode(event(cohort_name=_ABSENT, cohort_id="a:b")), "invalid_cohort_name")
    # with an explicit, valid name, the id itself is free-form
    assert isinstance(decode(event(cohort_id="a:b", cohort_name="ok")), Change)


def test_unknown_extra_fields_are_ignored() -> None:
    assert isinstance(decode(event(extra={"x": [1, 2]}, other=None)), Change)


def test_null_description_and_ts_are_absent() -> None:
    got = decode(event(cohort_description=None, ts=None))
    assert isinstance(got, Change)
    assert got.cohort_description is None
    assert got.ts_ms is None


def test_unicode_uid_and_name_are_kept_verbatim() -> None:
    got = decode(event(uid='ü "quoted" \\ 😀', cohort_name="Ünïcode 😀 name"))
    assert isinstance(got, Change)
    assert got.uid == 'ü "quoted" \\ 😀'
    assert got.cohort_name == "Ünïcode 😀 name"


def test_uid_of_max_length_is_accepted_one_more_is_not() -> None:
    assert isinstance(decode(event(uid="x" * MAX_ID_CHARS)), Change)
    rejected(decode(event(uid="x" * (MAX_ID_CHARS + 1))), "invalid_field")
    rejected(decode(event(cohort_id="x" * (MAX_ID_CHARS + 1))), "invalid_field")


# --- invalid_json ---


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"{",
        b'{"action": "enter",}',
        b"\xff\xfe\x00",  # not UTF-8
        b'{"action":"enter","cohort_id":"c","uid":"\xc3\x28"}',  # invalid UTF-8 in a string
        b'{"action":"enter","cohort_id":"c","uid":"\\ud800"}',  # lone surrogate escape
        b"NaN",
        b"1e400",
    ],
)
def test_undecodable_bytes_are_invalid_json(value: bytes) -> None:
    rejected(decoder().decode(value), "invalid_json")


@pytest.mark.parametrize("value", [b"[]", b"[1,2]", b'"a string"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_invalid_json(value: bytes) -> None:
    rejected(decoder().decode(value), "invalid_json")


@pytest.mark.parametrize("value", [b"", None])
def test_empty_value_is_invalid_json(value: bytes | None) -> None:
    rejected(decoder().decode(value), "invalid_json")


# --- missing_field ---


@pytest.mark.parametrize("field", ["action", "cohort_id", "uid"])
def test_required_field_absent_is_missing_field(field: str) -> None:
    result = rejected(decode(event(**{field: _ABSENT})), "missing_field")
    assert field in result.detail


@pytest.mark.parametrize("field", ["action", "cohort_id", "uid"])
def test_required_field_null_is_missing_field(field: str) -> None:
    rejected(decode(event(**{field: None})), "missing_field")


def test_empty_object_is_missing_field() -> None:
    rejected(decoder().decode(b"{}"), "missing_field")


# --- invalid_field ---


@pytest.mark.parametrize("uid", ["", " ", "\t\n ", "\u3000"])
def test_empty_or_whitespace_uid_is_invalid_field(uid: str) -> None:
    result = rejected(decode(event(uid=uid)), "invalid_field")
    assert "uid" in result.detail


@pytest.mark.parametrize("value", [42, 1.5, True, False, [], ["u"], {"id": "u"}])
def test_non_string_uid_is_invalid_field(value: Any) -> None:
    rejected(decode(event(uid=value)), "invalid_field")


@pytest.mark.parametrize("value", ["", "  ", 7, False, ["c"], {"c": 1}])
def test_bad_cohort_id_is_invalid_field(value: Any) -> None:
    rejected(decode(event(cohort_id=value)), "invalid_field")


@pytest.mark.parametrize("value", ["", 7, True, ["n"], {"n": 1}])
def test_bad_cohort_name_type_is_invalid_field(value: Any) -> None:
    rejected(decode(event(cohort_name=value)), "invalid_field")


@pytest.mark.parametrize("value", [7, False, ["d"], {"d": 1}])
def test_non_string_description_is_invalid_field(value: Any) -> None:
    rejected(decode(event(cohort_description=value)), "invalid_field")


@pytest.mark.parametrize(
    "ts",
    [
        -1,
        1e14,
        10**15,
        True,
        False,
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00",  # no timezone
        "2024-01-01",  # a date has no timezone either
        "0001-01-01T00:00:00Z",  # before the epoch: outside the epoch-ms range
        [1],
        {"ms": 1},
    ],
)
def test_bad_ts_is_invalid_field(ts: Any) -> None:
    result = rejected(decode(event(ts=ts)), "invalid_field")
    assert "ts" in result.detail


# --- unknown_action ---


@pytest.mark.parametrize("action", ["ENTER", "Enter", "join", "", " enter", 1, True, ["enter"], {}])
def test_unknown_action(action: Any) -> None:
    rejected(decode(event(action=action)), "unknown_action")


# --- invalid_cohort_name ---


def test_leading_dot_is_invalid_cohort_name() -> None:
    rejected(decode(event(cohort_name=".hidden")), "invalid_cohort_name")
    # a dot elsewhere is fine
    assert isinstance(decode(event(cohort_name="a.b.")), Change)


@pytest.mark.parametrize("char", list(FORBIDDEN))
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_forbidden_character_is_invalid_cohort_name(char: str, where: str) -> None:
    name = {"start": f"{char}name", "middle": f"na{char}me", "end": f"name{char}"}[where]
    result = rejected(decode(event(cohort_name=name)), "invalid_cohort_name")
    assert repr(char) in result.detail


# --- event_too_large ---


def test_value_over_max_event_bytes_is_event_too_large() -> None:
    dec = decoder(max_event_bytes=200)
    base = orjson.dumps(event(cohort_description=""))
    exact = orjson.dumps(event(cohort_description="d" * (200 - len(base))))
    assert len(exact) == 200
    assert isinstance(dec.decode(exact), Change)
    over = orjson.dumps(event(cohort_description="d" * (201 - len(base))))
    rejected(dec.decode(over), "event_too_large")


def test_too_large_is_checked_before_parsing() -> None:
    rejected(decoder(max_event_bytes=10).decode(b"x" * 11), "event_too_large")


# --- ts ---


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (0, 0),
        (1_700_000_000_123, 1_700_000_000_123),
        (1_700_000_000_123.9, 1_700_000_000_123),
        ("2024-01-01T00:00:00Z", 1_704_067_200_000),
        ("2024-01-01T00:00:00.250Z", 1_704_067_200_250),
        ("2024-01-01T00:00:00+00:00", 1_704_067_200_000),
        ("2024-01-01T05:30:00+05:30", 1_704_067_200_000),
        ("2023-12-31T19:00:00-05:00", 1_704_067_200_000),
        ("2024-01-01 00:00:00Z", 1_704_067_200_000),
    ],
)
def test_ts_epoch_ms_and_iso8601(ts: Any, expected: int) -> None:
    got = decode(event(ts=ts))
    assert isinstance(got, Change), got
    assert got.ts_ms == expected


def test_parse_ts_absent_is_none() -> None:
    assert parse_ts(None) is None


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 1, 1)))
@settings(max_examples=100, deadline=None)
def test_iso_ts_round_trips(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    got = parse_ts(aware.isoformat())
    assert got == int(aware.timestamp() * 1000)


# --- configurable schema ---


CUSTOM: dict[str, Any] = {
    "action_field": "op",
    "cohort_id_field": "segment",
    "cohort_name_field": "segment_title",
    "cohort_description_field": "about",
    "uid_field": "user",
    "ts_field": "at",
    "enter_actions": ["add", "join", "enter"],
    "exit_actions": ["remove", "leave"],
}


def test_custom_field_names_and_aliases() -> None:
    dec = decoder(**CUSTOM)
    got = decode(
        {
            "op": "join",
            "segment": "s1",
            "segment_title": "S one",
            "about": "x",
            "user": "u9",
            "at": "2024-01-01T00:00:00Z",
        },
        dec,
    )
    assert got == Change(True, "s1", "S one", "x", "u9", 1_704_067_200_000)
    for alias, add in [("add", True), ("enter", True), ("remove", False), ("leave", False)]:
        got = decode({"op": alias, "segment": "s1", "user": "u9"}, dec)
        assert isinstance(got, Change)
        assert got.add is add
        assert got.cohort_name == "s1"  # defaults to the custom id field


def test_custom_schema_ignores_default_field_names() -> None:
    dec = decoder(**CUSTOM)
    result = rejected(decode(event(), dec), "missing_field")
    assert "op" in result.detail
    rejected(decode({"op": "exit", "segment": "s1", "user": "u"}, dec), "unknown_action")
    rejected(decode({"op": "add", "segment": "s1", "uid": "u"}, dec), "missing_field")
    rejected(decode({"op": "add", "segment": "s1", "user": "u", "at": -5}, dec), "invalid_field")
    rejected(
        decode({"op": "add", "segment": "s1", "user": "u", "segment_title": "a|b"}, dec),
        "invalid_cohort_name",
    )


# --- hostile input: decode is total ---


def check_total(dec: Decoder, value: bytes | None) -> Change | Rejection:
    """The property: never raises; a Change obeys the API's rules, a Rejection has a reason."""
    result = dec.decode(value)
    if isinstance(result, Rejection):
        assert result.reason in REASONS
        assert result.reason != "rejected_by_api"  # only the API decides that
        assert isinstance(result.detail, str)
        assert len(result.detail) <= 400
        return result
    assert isinstance(result, Change)
    assert isinstance(result.add, bool)
    for text in (result.uid, result.cohort_id):
        assert isinstance(text, str)
        assert text.strip()
    assert isinstance(result.cohort_name, str)
    assert result.cohort_name
    assert len(result.uid) <= MAX_ID_CHARS
    assert not result.cohort_name.startswith(".")
    assert not set(result.cohort_name) & set(FORBIDDEN)
    assert result.cohort_description is None or isinstance(result.cohort_description, str)
    assert result.ts_ms is None or (type(result.ts_ms) is int and 0 <= result.ts_ms < 10**14)
    member_bytes(result.uid)  # the uid can be serialized into a request body
    orjson.dumps(result.cohort_name)
    return result


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
name_chars = st.sampled_from([*FORBIDDEN, ".", " ", "a", "Z", "😀", "\x00", "\n", "é"])
field_values = (
    json_values
    | st.text(max_size=20)
    | st.text(name_chars, max_size=8)
    | st.sampled_from(["enter", "exit", "", " ", ".x", "2024-01-01T00:00:00Z", "2024-01-01"])
    | st.integers(min_value=-(10**15), max_value=10**15)
)
events = st.fixed_dictionaries(
    {},
    optional={
        "action": field_values | st.sampled_from(["enter", "exit"]),
        "cohort_id": field_values,
        "cohort_name": field_values,
        "cohort_description": field_values,
        "uid": field_values,
        "ts": field_values,
        "junk": json_values,
    },
)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    check_total(decoder(), value)


@given(json_values)
@settings(max_examples=150, deadline=None)
def test_arbitrary_json_values_never_raise(value: Any) -> None:
    check_total(decoder(), json.dumps(value).encode())


@given(events)
@settings(max_examples=250, deadline=None)
def test_events_with_wrong_types_in_every_field_never_raise(obj: dict[str, Any]) -> None:
    result = check_total(decoder(), orjson.dumps(obj))
    if obj.get("action") in ("enter", "exit") and isinstance(result, Change):
        assert result.add is (obj["action"] == "enter")
        assert result.uid == obj["uid"]
        assert result.cohort_id == obj["cohort_id"]


@given(
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(["enter", "exit"]),
            "cohort_id": st.text(min_size=1, max_size=20),
            "uid": st.text(min_size=1, max_size=40),
        },
        optional={"cohort_name": st.text(name_chars, min_size=1, max_size=10)},
    )
)
@settings(max_examples=300, deadline=None)
def test_well_typed_events_are_accepted_unless_a_rule_says_no(obj: dict[str, Any]) -> None:
    result = check_total(decoder(), orjson.dumps(obj))
    name = obj.get("cohort_name", obj["cohort_id"])
    expect_bad_name = name.startswith(".") or bool(set(name) & set(FORBIDDEN))
    if not obj["uid"].strip() or not obj["cohort_id"].strip():
        assert isinstance(result, Rejection)
        assert result.reason == "invalid_field"
    elif expect_bad_name:
        assert isinstance(result, Rejection)
        assert result.reason == "invalid_cohort_name"
    else:
        assert isinstance(result, Change)
        assert (result.uid, result.cohort_name) == (obj["uid"], name)


@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", '{"a":']))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_deep_nesting_never_raises(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    nested = (opener * depth + "1" + closer * depth).encode()
    check_total(decoder(max_event_bytes=1 << 20), nested)
    wrapped = b'{"action":"enter","cohort_id":"c","uid":' + nested + b"}"
    check_total(decoder(max_event_bytes=1 << 20), wrapped)


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_ten_thousand_nested_arrays_is_a_rejection(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    nested = (opener * 10_000 + closer * 10_000).encode()
    rejected(decoder(max_event_bytes=1 << 20).decode(nested), "invalid_json")
    field = b'{"action":"enter","cohort_id":"c","uid":"u","ts":' + nested + b"}"
    rejected(decoder(max_event_bytes=1 << 20).decode(field), "invalid_json")


@given(
    st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b)),
    st.sampled_from(["uid", "cohort_id", "cohort_name", "action"]),
)
@settings(max_examples=100, deadline=None)
def test_non_utf8_inside_a_field_is_invalid_json(junk: bytes, field: str) -> None:
    body = orjson.dumps(event(**{field: "@@"})).replace(b"@@", junk.replace(b'"', b"'"))
    if _is_utf8(body):  # the substitution may have become valid; nothing to claim then
        return
    rejected(check_total(decoder(), body), "invalid_json")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


MB = 1 << 20


@pytest.mark.parametrize("field", ["uid", "cohort_id", "cohort_name", "cohort_description", "junk"])
def test_one_megabyte_values(field: str) -> None:
    body = orjson.dumps(event(**{field: "x" * MB}))
    rejected(check_total(decoder(), body), "event_too_large")
    result = check_total(decoder(max_event_bytes=2 * MB), body)
    if field in ("uid", "cohort_id"):
        rejected(result, "invalid_field")
    else:
        assert isinstance(result, Change)


def test_one_megabyte_of_garbage_and_of_zeros() -> None:
    for value in (b"\x00" * MB, b"\xff" * MB, b" " * MB, b"{" * MB, b"[" * MB):
        check_total(decoder(), value)
        rejected(check_total(decoder(max_event_bytes=2 * MB), value), "invalid_json")
