"""What to do with a Cohort Sync response: a pure function of the status, body and headers.

Every status is handled on purpose, and nothing but a 2xx ever settles a change:

| status                            | verdict             | why                                   |
|-----------------------------------|---------------------|---------------------------------------|
| 200-299                           | ACCEPTED            | the API's only acknowledgement        |
| 300-399, any (304, 399 too)       | WRONG_ENDPOINT      | the URL does not reach the API: a     |
| 404, 405, 421                     |                     | config fault (base_url / data_center).|
|                                   |                     | Redirects are never followed          |
|                                   |                     | (client.py); paused and retried slowly|
|                                   |                     | like 401/403                          |
| 401, 403                          | AUTH                | credentials refused: paused, retried  |
|                                   |                     | slowly with credentials read afresh   |
| 400 about the request as a whole  | REJECT_ALL          | all its members to the DLQ            |
| 400 otherwise                     | BISECT              | halve until the refused uids are alone|
| 413                               | SPLIT               | halve the body                        |
| 429                               | RETRY rate_limited  | back off, honour Retry-After          |
| 408, 500-599                      | RETRY server_error  | the server's fault: back off, retry   |
| other 4xx (409, 415, 422...)      | RETRY server_error  | our bug or a proxy's: retrying may not|
|                                   |                     | help, but dropping would lose changes;|
|                                   |                     | requests_total{status_class="4xx"}    |
| 100-199                           | RETRY server_error  | not a final answer (aiohttp skips 100 |
|                                   |                     | Continue): outcome unknown, resend    |
| below 100, 600 and above          | RETRY server_error  | not HTTP: a broken server or proxy    |

Retrying is always safe: add and remove are idempotent.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import orjson

# A 400 naming one of these is about the request as a whole: bisecting cannot isolate anything.
REQUEST_LEVEL_ATTRIBUTES = frozenset(
    {"action", "partner", "parameters", "cohort_id", "cohort_name", "cohort_description"}
)


# Cohort Sync documents none of these: they say the URL (a path under base_url, a proxy's
# route, another service's host) is not the API, and only a person can change that
NOT_THE_API = frozenset({404, 405, 421})


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # 429, 5xx, timeout, connection error: back off and send again
    SPLIT = "split"  # 413: halve and send both halves
    BISECT = "bisect"  # 400 about some members: halve until the refused uids are isolated
    REJECT_ALL = "reject_all"  # 400 about the request as a whole: all members to the DLQ
    AUTH = "auth"  # 401/403: pause, wait, re-read credentials, try again
    WRONG_ENDPOINT = "wrong_endpoint"  # 3xx, 404/405/421: pause, retry slowly (fix the URL)


class Outcome(NamedTuple):
    verdict: Verdict
    cause: str  # retry cause label, or what went wrong for rejections, AUTH and REDIRECT
    retry_after: float | None = None


def classify(
    status: int, body: bytes, retry_after_header: str | None, location: str | None = None
) -> Outcome:
    """`location` is the 3xx's Location header, already made printable (response.py)."""
    if 200 <= status < 300:
        return Outcome(Verdict.ACCEPTED, "")
    if 300 <= status < 400:
        where = location or "(no Location header)"
        return Outcome(Verdict.WRONG_ENDPOINT, f"HTTP {status} to {where}")
    if status in NOT_THE_API:
        return Outcome(Verdict.WRONG_ENDPOINT, f"HTTP {status}: no Cohort Sync API at this URL")
    if status == 429:
        return Outcome(Verdict.RETRY, "rate_limited", parse_retry_after(retry_after_header))
    if 500 <= status < 600 or status == 408:
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
    # other 4xx, 1xx and numbers outside HTTP: see the table in the module docstring
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
