"""The deprecated v1 Custom Segment (CSV) API (§6), so v1 integrations can be tested.

`POST /csv_segment` (the path of the older mirror, §8.15). No Basic auth: the body's
`signature` is checked instead. Order of checks (body `{"status", "error_message", ...}`):

1. `Content-Type` application/json and a JSON object: 400 "Bad Value for body"
2. each field in document order: `appId`, `attribute`, `attributeType`
   (string|numeric|geo_point|date), `segName`, `csvUrl` (http/https), `callback`
   (http/https), `signature` a string; `emails` optional, a list of strings; `appId` must be
   this workspace: 400 "Bad Value for <field>"
3. signature = lowercase hex SHA-256 of `appId|segName|<api key>`: else 401 "Unauthorized"
4. the file-operations quota shared with v2 (§6): 429 (undocumented for v1; its envelope)
5. a segment of that name exists (any type; v1 is create-only): 409 "duplicate request"
6. 200 with `request_id` and `segment_name`; an empty file segment is created and the file
   is processed as for v2 (file_jobs.py), the callback in v1's shape (no `db_name`).

The same CSV rules apply to every `attributeType` (csv_rules.py; `numeric` values must be
numbers), so a `geo_point` value cannot hold a comma.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from typing import Any

import orjson
from aiohttp import web

from . import file_jobs
from .context import CONTEXT, EmulatorContext
from .file_segments import admit_file_operation
from .responses import json_response
from .state import FILE_TYPE, Segment, new_object_id, now_iso
from .validation import is_json_content_type

PATH = "/csv_segment"
ATTRIBUTE_TYPES = frozenset({"string", "numeric", "geo_point", "date"})
_STRING_FIELDS = ("appId", "attribute", "attributeType", "segName", "csvUrl", "callback")


async def handle(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    context.stats.segments_api_requests += 1
    if not is_json_content_type(request.headers.get("Content-Type")):
        return _error(400, "Bad Value for body")
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        return _error(400, "Bad Value for body")
    bad = _bad_field(doc, context.workspace_id)
    if bad is not None:
        return _error(400, f"Bad Value for {bad}")
    if not _signed(doc, context.knobs.api_key):
        return _error(401, "Unauthorized")
    quota = admit_file_operation(context)
    if quota is not None:
        return _error(429, quota.message, segment_name=doc["segName"])
    request_id = file_jobs.new_job_id()
    if context.store.by_name(doc["segName"]):
        return _error(409, "duplicate request", request_id=request_id, segment_name=doc["segName"])
    segment = _create(context, doc["segName"])
    file_jobs.start(context, _job(context, segment, doc, request_id))
    return json_response({"status": 200, "request_id": request_id, "segment_name": segment.name})


def _bad_field(doc: dict[str, Any], workspace_id: str) -> str | None:
    for key in _STRING_FIELDS:
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            return key
    checks = {
        "appId": doc["appId"] == workspace_id,
        "attributeType": doc["attributeType"] in ATTRIBUTE_TYPES,
        "csvUrl": _is_http_url(doc["csvUrl"]),
        "callback": _is_http_url(doc["callback"]),
        "signature": isinstance(doc.get("signature"), str),
        "emails": isinstance(doc.get("emails", []), list)
        and all(isinstance(e, str) for e in doc.get("emails", [])),
    }
    return next((key for key, ok in checks.items() if not ok), None)


def _signed(doc: dict[str, Any], api_secret: str) -> bool:
    expected = hashlib.sha256(f"{doc['appId']}|{doc['segName']}|{api_secret}".encode()).hexdigest()
    return hmac.compare_digest(expected.encode(), doc["signature"].encode())


def _is_http_url(value: str) -> bool:
    parsed = urllib.parse.urlsplit(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _create(context: EmulatorContext, name: str) -> Segment:
    now = now_iso()
    segment = Segment(id=new_object_id(), name=name, created_time=now, updated_time=now,
                      type=FILE_TYPE)  # fmt: skip
    context.store.add(segment)
    return segment


def _job(
    context: EmulatorContext, segment: Segment, doc: dict[str, Any], request_id: str
) -> file_jobs.Job:
    return file_jobs.Job(
        segment=segment,
        operation="create",
        file_url=doc["csvUrl"],
        attribute_type=doc["attributeType"],
        callback_url=doc["callback"],
        family="v1",
        request_id=request_id,
        db_name=context.workspace_id,
    )


def _error(status: int, message: str, **extra: str) -> web.Response:
    return json_response({"status": status, "error_message": message, **extra}, status=status)
