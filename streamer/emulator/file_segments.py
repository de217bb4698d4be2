"""v2 file segments (§3): create (POST) and add-users / remove-users / replace (PUT).

Order of checks; the first that fails decides the answer (`{"title","description"}` envelope):

1. credentials (401, v2 Basic only, see auth.py)
2. `Content-Type`: one of §3.1's CSV types, or application/json (§8.4: the body is JSON and an
   older page says so; both readings are accepted here, in this one place): else 415
3. the file-operations quota, 10 an hour and 100 a day for create/add/remove/replace together
   (§3.2; replace counts, §8.6): 429 "Too Many Requests"
4. the body: a JSON object with `name`, `attribute_name`, `attribute_type` (string|double),
   `file_url` (http/https), optional `callback_url` (http/https) and `emails` (strings);
   create needs `expiry_time` (whole days >= 1), the others may send `cs_id`: 400
5. create: the name is free among all segments (409 "Resource not created"), and the active
   segments cap (`active_segments_limit`, all types) has room (429)
   add/remove/replace: the file segment named by `cs_id` (wins) or `name` exists (404; only
   file segments count: the others cannot be changed by file, §3.7)
6. 202 at once with `cs_name`/`cs_id`; the segment is created empty, then file_jobs.py
   downloads, checks and applies the file and calls back.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from streamer import segment_limits

from . import auth, file_jobs
from .context import CONTEXT, EmulatorContext
from .errors import ApiError
from .responses import json_response, v2_error
from .state import FILE_TYPE, Segment, new_object_id, now_iso

CSV_CONTENT_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "application/vnd.ms-excel",
        "text/plain",
        "application/octet-stream",
        "binary/octet-stream",
        "application/json",
    }
)
MESSAGES = {
    "create": "File-segment creation request accepted",
    "add": "File-segment user-add request accepted",
    "remove": "File-segment user-remove request accepted",
    "replace": "File-segment user-replace request accepted",
}
ATTRIBUTE_TYPES = frozenset({"string", "double"})


def handler(operation: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        context = request.app[CONTEXT]
        context.stats.segments_api_requests += 1
        answer = await _answer(request, context, operation)
        if isinstance(answer, ApiError):
            return v2_error(answer)
        segment, job_request = answer
        file_jobs.start(context, job_request)
        body = {"message": MESSAGES[operation], "success": True}
        return json_response({**body, "cs_name": segment.name, "cs_id": segment.id}, status=202)

    return handle


async def _answer(
    request: web.Request, context: EmulatorContext, operation: str
) -> tuple[Segment, file_jobs.Job] | ApiError:
    knobs = context.knobs
    problem = auth.forced_failure(knobs.fail_auth) or auth.check_v2(
        request.headers, context.workspace_id, knobs.api_key
    )
    if problem is not None:
        return problem
    content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type not in CSV_CONTENT_TYPES:
        return ApiError(415, "Unsupported Media Type", "Content type is not supported")
    quota_error = admit_file_operation(context)
    if quota_error is not None:
        return quota_error
    fields = parse_request(await request.read(), operation)
    if isinstance(fields, ApiError):
        return fields
    segment = _create(context, fields) if operation == "create" else _find(context, fields)
    if isinstance(segment, ApiError):
        return segment
    job = file_jobs.Job(
        segment=segment,
        operation=operation,
        file_url=fields["file_url"],
        attribute_type=fields["attribute_type"],
        callback_url=fields.get("callback_url"),
        family="v2",
        request_id=file_jobs.new_job_id(),
        db_name=context.workspace_id,
    )
    return segment, job


def admit_file_operation(context: EmulatorContext) -> ApiError | None:
    """§3.2's shared budget of file operations (v1 CSV creates use it too, §6)."""
    if not context.knobs.segment_quotas:
        return None
    full = context.quotas.admit("file", segment_limits.FILE_OPS, context.clock())
    if full is None:
        return None
    period = "hour" if full.seconds <= segment_limits.HOUR else "day"
    message = f"File segment operations limit breached: {full.limit} per {period}"
    return ApiError(429, "Too Many Requests", message)


def parse_request(body: bytes, operation: str) -> dict[str, Any] | ApiError:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _invalid("Request body is not valid JSON")
    if not isinstance(doc, dict):
        return _invalid("Request body must be a JSON object")
    for key in ("name", "attribute_name", "attribute_type", "file_url"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            return _invalid(f"{key} is required")
    if doc["attribute_type"] not in ATTRIBUTE_TYPES:
        return _invalid("attribute_type must be one of string, double")
    for key in ("file_url", "callback_url"):
        if key in doc and not _is_http_url(doc[key]):
            return _invalid(f"{key} must be an http or https URL")
    emails = doc.get("emails", [])
    if not isinstance(emails, list) or not all(isinstance(e, str) and "@" in e for e in emails):
        return _invalid("emails must be a list of email addresses")
    return _operation_fields(doc, operation)


def _operation_fields(doc: dict[str, Any], operation: str) -> dict[str, Any] | ApiError:
    expiry = doc.get("expiry_time")
    if operation == "create":
        if not isinstance(expiry, int) or isinstance(expiry, bool) or expiry < 1:
            return _invalid("expiry_time is required: whole days >= 1")
    elif "cs_id" in doc and (not isinstance(doc["cs_id"], str) or not doc["cs_id"]):
        return _invalid("cs_id must be a non-empty string")
    return doc


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = urllib.parse.urlsplit(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _create(context: EmulatorContext, fields: dict[str, Any]) -> Segment | ApiError:
    name = fields["name"]
    if context.store.by_name(name):
        return ApiError(409, "Resource not created", f"Name already exists : {name}")
    limit = context.knobs.active_segments_limit
    if context.store.active_count() >= limit:
        message = f"Total active segments limit breached: {limit}. Request rejected!"
        return ApiError(429, "Too Many Requests", message)
    now = now_iso()
    segment = Segment(id=new_object_id(), name=name, created_time=now, updated_time=now,
                      type=FILE_TYPE)  # fmt: skip
    context.store.add(segment)
    return segment


def _find(context: EmulatorContext, fields: dict[str, Any]) -> Segment | ApiError:
    cs_id = fields.get("cs_id")
    if cs_id is not None:
        segment = context.store.by_id(cs_id)
        found = [segment] if segment is not None else []
        missing = f"Custom segment not found for the given name or cs_id: {cs_id}"
    else:
        found = context.store.by_name(fields["name"])
        missing = f"Segment not found with the given name: {fields['name']}"
    files = [s for s in found if s.type == FILE_TYPE]
    return files[0] if files else ApiError(404, "Entity Not Found", missing)


def _invalid(description: str) -> ApiError:
    return ApiError(400, "Invalid Request", description)
