"""Decode one Kafka message value into a membership change, or say exactly why not.

Pure and total: any bytes in, a Change or a Rejection out; nothing raises. A Rejection's reason
is one of REASONS, which are also the DLQ `reason` header and the metric label values.

Two paths: the native fast path (streamer/fastpath, Rust) reads a well-formed event; anything it
is not sure of is parsed again by orjson on the careful path here, which holds the rules and
names exactly what is wrong. The fast path only has to agree with it (tests/test_fastpath.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

import orjson

# Change(add, cohort_id, cohort_name, cohort_description, uid, ts_ms): a valid event's fields
# (`add`: enter). The native reader's type (streamer/fastpath/src/change.rs), so both paths return
# the same named fields.
from streamer._fastpath import Change, FastPath, cohort_name
from streamer.config import EventsConfig

REASONS = (
    "invalid_json",
    "missing_field",
    "invalid_field",
    "unknown_action",
    "invalid_cohort_name",
    "event_too_large",
    "rejected_by_api",
)
# Cohort Sync refuses names starting with '.' or holding any of | * ? \ : < > = $ "
FORBIDDEN_NAME_START = "."
FORBIDDEN_NAME_CHARS = '|*?\\:<>=$"'
_FORBIDDEN_NAME = re.compile(
    f"^[{re.escape(FORBIDDEN_NAME_START)}]|[{re.escape(FORBIDDEN_NAME_CHARS)}]"
)
# uid and cohort strings longer than this cannot be a sane id and would bloat requests
MAX_ID_CHARS = 1024
MAX_EPOCH_MS = 10**14  # year ~5138: anything larger is not epoch milliseconds


class Rejection(NamedTuple):
    reason: str
    detail: str


class Decoder:
    """Decodes with one schema: the fast path first, the careful path when it is not sure."""

    def __init__(self, schema: EventsConfig, max_event_bytes: int) -> None:
        self._s = schema
        self._max_bytes = max_event_bytes
        self._actions = {a: True for a in schema.enter_actions}
        self._actions.update({a: False for a in schema.exit_actions})
        self.fast_path = fast_path(schema, max_event_bytes)

    def decode(self, value: bytes | None) -> Change | Rejection:
        if not value:
            return Rejection("invalid_json", "empty message value")
        if len(value) > self._max_bytes:
            return Rejection(
                "event_too_large", f"{len(value)} bytes > max_event_bytes {self._max_bytes}"
            )
        return self.fast_path.decode(value) or self._careful(value)

    def _careful(self, value: bytes) -> Change | Rejection:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return Rejection("invalid_json", f"not JSON: {exc}"[:300])
        if not isinstance(event, dict):
            return Rejection("invalid_json", f"expected a JSON object, got {type(event).__name__}")
        return self._from_object(event)

    def _from_object(self, event: dict[str, Any]) -> Change | Rejection:
        s = self._s
        action = event.get(s.action_field)
        add = self._actions.get(action) if isinstance(action, str) else None
        if add is None:
            if action is None:
                return Rejection("missing_field", f"'{s.action_field}' is missing")
            return Rejection("unknown_action", f"'{s.action_field}' is {_show(action)}")
        cohort_id = _required_string(event, s.cohort_id_field)
        if isinstance(cohort_id, Rejection):
            return cohort_id
        uid = _required_string(event, s.uid_field)
        if isinstance(uid, Rejection):
            return uid
        name = event.get(s.cohort_name_field)  # null means absent, as for every optional field
        if name is not None and (not isinstance(name, str) or not name):
            return Rejection("invalid_field", f"'{s.cohort_name_field}' must be a non-empty string")
        name = cohort_name(name, cohort_id)  # the native reader's default: one rule for both
        name_problem = _name_problem(name)
        if name_problem:
            return Rejection("invalid_cohort_name", name_problem)
        description = event.get(s.cohort_description_field)
        if description is not None and not isinstance(description, str):
            return Rejection("invalid_field", f"'{s.cohort_description_field}' must be a string")
        ts_ms = parse_ts(event.get(s.ts_field))
        if isinstance(ts_ms, Rejection):
            return ts_ms
        return Change(add, cohort_id, name, description, uid, ts_ms)


def fast_path(schema: EventsConfig, max_event_bytes: int) -> FastPath:
    """The native reader of this schema, held to this module's limits and name rules."""
    return FastPath(
        fields={
            "action": schema.action_field,
            "cohort_id": schema.cohort_id_field,
            "uid": schema.uid_field,
            "name": schema.cohort_name_field,
            "description": schema.cohort_description_field,
            "ts": schema.ts_field,
        },
        enter_actions=schema.enter_actions,
        exit_actions=schema.exit_actions,
        limits={
            "max_event_bytes": max_event_bytes,
            "max_id_chars": MAX_ID_CHARS,
            "max_epoch_ms": MAX_EPOCH_MS,
            "forbidden_name_start": FORBIDDEN_NAME_START,
            "forbidden_name_chars": FORBIDDEN_NAME_CHARS,
        },
        parse_ts=parse_ts,
    )


def _name_problem(name: str) -> str | None:
    bad = _FORBIDDEN_NAME.search(name)
    return f"cohort name {_show(name)} has forbidden {_show(bad.group())}" if bad else None


def _required_string(event: dict[str, Any], field: str) -> str | Rejection:
    value = event.get(field)
    if value is None:
        return Rejection("missing_field", f"'{field}' is missing")
    if not isinstance(value, str) or not value.strip():
        return Rejection("invalid_field", f"'{field}' must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        return Rejection("invalid_field", f"'{field}' is longer than {MAX_ID_CHARS} characters")
    return value


def parse_ts(value: Any) -> int | Rejection | None:
    """The event time in epoch ms, from epoch ms (int/float) or ISO-8601; absent is fine."""
    if value is None:
        return None
    # the common case first, by exact type: `int | float` in isinstance builds a union per call
    if type(value) is int and 0 <= value < MAX_EPOCH_MS:
        return value
    if isinstance(value, bool):
        return Rejection("invalid_field", "'ts' must be epoch milliseconds or ISO-8601")
    if isinstance(value, (int, float)):  # a tuple: `int | float` would build a union per call
        if not 0 <= value < MAX_EPOCH_MS:
            return Rejection("invalid_field", "'ts' epoch milliseconds out of range")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return Rejection("invalid_field", f"'ts' {_show(value)} is not ISO-8601")
        if parsed.tzinfo is None:
            return Rejection("invalid_field", "'ts' ISO-8601 needs a timezone (e.g. Z)")
        ms = int(parsed.timestamp() * 1000)
        if not 0 <= ms < MAX_EPOCH_MS:  # the same range as epoch milliseconds
            return Rejection("invalid_field", "'ts' ISO-8601 time out of range")
        return ms
    return Rejection("invalid_field", "'ts' must be epoch milliseconds or ISO-8601")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
