"""What to do with a Cohort Sync response: a pure function of the status, body and headers."""

from __future__ import annotations

import enum
from typing import NamedTuple

import orjson

# A 400 naming one of these is about the request as a whole: bisecting cannot isolate anything.
REQUEST_LEVEL_ATTRIBUTES = frozenset(
    {"action", "partner", "parameters", "cohort_id", "cohort_name", "cohort_description"}
)


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # 429, 5xx, timeout, connection error: back off and send again
    SPLIT = "split"  # 413: halve and send both halves
    BISECT = "bisect"  # 400 about some members: halve until the refused uids are isolated
    REJECT_ALL = "reject_all"  # 400 about the request as a whole: all members to the DLQ
    AUTH = "auth"  # 401/403: pause, wait, re-read credentials, try again


class Outcome(NamedTuple):
    verdict: Verdict
    cause: str  # retry cause label, or the API's message for rejections
    retry_after: float | None = None


def classify(status: int, body: bytes, retry_after_header: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome(Verdict.ACCEPTED, "")
    if status == 429:
        return Outcome(Verdict.RETRY, "rate_limited", parse_retry_after(retry_after_header))
    if status >= 500 or status == 408:
        return Outcome(Verdict.RETRY, "server_error", parse_retry_after(retry_after_header))
    if status in (401, 403):
        return Outcome(Verdict.AUTH, f"HTTP {status}: {api_message(body)}")
    if status == 413:
        return Outcome(Verdict.SPLIT, "too_large")
    if status == 400:
        attribute, message = _error_fields(body)
        verdict = (
            Verdict.REJECT_ALL
            if attribute in REQUEST_LEVEL_ATTRIBUTES or message.startswith("Could not decode")
            else Verdict.BISECT
        )
        return Outcome(verdict, message or "HTTP 400")
    # other 4xx (404, 415...) are our bug or a proxy's: retrying will not help, neither will
    # dropping; treat like a server fault so nothing is lost and the metric shows it
    return Outcome(Verdict.RETRY, "server_error")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare for APIs; treated as absent)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def api_message(body: bytes) -> str:
    return _error_fields(body)[1] or body[:200].decode("utf-8", "replace")


def _error_fields(body: bytes) -> tuple[str | None, str]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, ""
    attribute = error.get("attribute")
    message = error.get("message")
    return (
        attribute if isinstance(attribute, str) else None,
        message[:500] if isinstance(message, str) else "",
    )
