"""`POST /v1/integrations/cohortsync` (moengage-api.md §2).

Order of checks; the first that fails decides the answer:

1. `fail_auth` knob (forced 401 "App Secret key mismatch" or 403 "Account Suspended")
2. credentials (401): Basic header present and readable -> `MOE-APPKEY` equals the Basic
   username -> username/key equal this workspace's id/key (see auth.py)
3. `Content-Type` is application/json (415)
4. size (413): `Content-Length` above `max_payload_bytes`, or more bytes than that actually
   arrive (chunked bodies); exactly `max_payload_bytes` is accepted
5. rate limit (429, with `Retry-After` unless the `retry_after` knob is off): the window
   already holds `rate_limit_per_minute` accepted requests
6. injected fault (seeded): 500, or 429 without `Retry-After`
7. body validation (400, see validation.py), then a `cohort_name` that names a file segment
   (400, attribute "cohort_name": §2, Cohort Sync cannot modify file segments; 400 rather
   than 403, which the streamer rightly reads as a suspended account), then the
   `refuse_uids` knob (400, attribute "members", naming the first refused uid in request order)
8. accepted: membership applied, counted in the rate window, 200

Every answer is then delayed by `latency_ms`, after any state change, so a client that times
out cannot tell whether its change was applied, as in production.
Auth comes first because an unauthenticated caller must learn nothing else; the rate limit
precedes parsing because a gateway rejects before the body is looked at.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import auth, errors
from .config import Knobs
from .context import CONTEXT, EmulatorContext
from .errors import ApiError
from .faults import Fault
from .responses import JSON, cohort_error
from .validation import CohortRequest, is_json_content_type, parse_cohort_request

PATH = "/v1/integrations/cohortsync"
COHORT_KEY = web.RequestKey("cohort_id", str)
_SUCCESS_BODY = (
    b'{"status":"success","message":"Your request has been accepted and will be processed soon."}'
)


async def handle(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    knobs = context.knobs  # one consistent snapshot for the whole request
    context.stats.record_arrival(context.clock())
    response = await _answer(request, context, knobs)
    context.stats.record_status(response.status)
    cohort_id: str | None = request.get(COHORT_KEY)
    if cohort_id is not None:  # from parse to answer: overlapping requests of a cohort show
        context.stats.cohort_started(cohort_id)
    try:
        if knobs.latency_ms > 0:
            await asyncio.sleep(knobs.latency_ms / 1000)
    finally:
        if cohort_id is not None:
            context.stats.cohort_finished(cohort_id)
    return response


async def _answer(request: web.Request, context: EmulatorContext, knobs: Knobs) -> web.Response:
    forced = auth.forced_failure(knobs.fail_auth)
    if forced is not None:
        context.stats.record_injected("auth")
        return cohort_error(forced)
    problem = auth.check_cohort_sync(request.headers, context.workspace_id, knobs.api_key)
    if problem is not None:
        return cohort_error(problem)
    if not is_json_content_type(request.headers.get("Content-Type")):
        return cohort_error(errors.UNSUPPORTED_MEDIA_TYPE)
    body = await read_capped(request, knobs.max_payload_bytes)
    if body is None:
        return cohort_error(errors.PAYLOAD_TOO_LARGE)
    context.stats.record_body(len(body))
    # No await from here on: the rate decision and the state change it guards are atomic.
    return _admit(request, body, context, knobs)


def _admit(
    request: web.Request, body: bytes, context: EmulatorContext, knobs: Knobs
) -> web.Response:
    now = context.clock()
    if not context.limiter.allows(now):
        return cohort_error(_rate_limited(context, knobs, now))
    fault = context.faults.decide(knobs.fail_5xx_ratio, knobs.fail_429_ratio)
    if fault is not Fault.NONE:
        context.stats.record_injected(fault.value)
        injected = errors.SERVER_ERROR if fault is Fault.SERVER_ERROR else errors.RATE_LIMITED
        return cohort_error(injected)
    parsed = parse_cohort_request(body)
    if isinstance(parsed, ApiError):
        return cohort_error(parsed)
    request[COHORT_KEY] = parsed.cohort_id
    refused = _file_segment(parsed, context) or _first_refused(parsed, knobs.refuse_uids)
    if refused is not None:
        return cohort_error(refused)
    changed = context.store.apply(parsed)
    context.limiter.record_accepted(now)
    context.stats.record_accepted(now, parsed.action, len(parsed.uids), len(body), changed)
    return web.Response(body=_SUCCESS_BODY, content_type=JSON)


def _rate_limited(context: EmulatorContext, knobs: Knobs, now: float) -> ApiError:
    if not knobs.retry_after:
        return errors.RATE_LIMITED
    wait = context.limiter.retry_after_seconds(now)
    rate = errors.RATE_LIMITED
    return ApiError(rate.status, rate.type, rate.message, headers={"Retry-After": str(wait)})


def _file_segment(request: CohortRequest, context: EmulatorContext) -> ApiError | None:
    """§2: Cohort Sync cannot modify a file segment; one named like the cohort is refused."""
    if request.cohort_name not in context.store.file_names:
        return None
    message = f"{request.cohort_name} is a file segment: Cohort Sync cannot change it"
    return errors.invalid_attribute("cohort_name", message)


def _first_refused(request: CohortRequest, refuse_uids: frozenset[str]) -> ApiError | None:
    if not refuse_uids or refuse_uids.isdisjoint(request.uids):
        return None
    uid = next(u for u in request.uids if u in refuse_uids)
    return errors.invalid_attribute("members", f"uid {uid} can not be processed")


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
