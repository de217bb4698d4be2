"""v3 filter segments: `POST /v3/custom-segments` (§5.5) and `PATCH .../{id}` (§5.7).

Order of checks; the first that fails decides the answer (all in the §5.3 v3 envelope):

1. credentials, then the operation's quotas (v3gate.py): 401/400, 429 "API rate limit breached"
2. `Content-Type` application/json and a JSON object body: 400 "Invalid request"
3. update only: the id exists (404 "Entity Not Found"), the segment is an active filter
   segment (403 "Forbidden operation" for file, Cohort Sync and archived segments)
4. the name: create needs one, update may send one; a string, not only whitespace, no HTML
   (`<` or `>`): 400 "Invalid Request"; update's `updated_by` an email address: 400
5. the filter grammar and its limits (filters.py): 400, 413
6. uniqueness among all segments, archived included (§5.3: "both the name and the filter
   definition of a segment must be unique"): 409 for the name, then 409 for the definition
   with `existing_cs_name` and `existing_cs_id`
7. create only: the active segments cap (`active_segments_limit`, all types): 429 with
   `actual_count` (the count this create would make) and `limit`. An update never changes the
   number of active segments (archived ones are refused at 3), so it never meets the cap.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from streamer import segment_limits as quotas

from . import filters, v3gate
from .context import CONTEXT, EmulatorContext
from .errors import ApiError, new_request_id
from .filters import INVALID_HINT
from .responses import json_response, v3_error
from .state import FILTER_TYPE, Segment, new_object_id, now_iso
from .validation import is_json_content_type

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
INVALID_FORMAT = ApiError(
    400, "Invalid request", "Invalid request format. Please check the documentation."
)


async def create(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    problem = v3gate.admit(request, context, "create", quotas.V3_CREATE)
    doc = problem or await _body(request)
    if isinstance(doc, ApiError):
        return v3_error(doc)
    segment = _new_segment(context, doc)
    if isinstance(segment, ApiError):
        return v3_error(segment)
    context.store.add(segment)
    return _answer(segment, 201)


async def update(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    problem = v3gate.admit(request, context, "update", quotas.V3_UPDATE)
    doc = problem or await _body(request)
    if isinstance(doc, ApiError):
        return v3_error(doc)
    segment = _updatable(context, request.match_info["segment_id"])
    if isinstance(segment, ApiError):
        return v3_error(segment)
    changed = _checked_update(context, segment, doc)
    if isinstance(changed, ApiError):
        return v3_error(changed)
    name, group = changed
    segment.name = name
    segment.included_filters = group
    segment.definition_key = filters.definition_key(group)
    segment.description = describe(group)
    segment.updated_time = now_iso()
    return _answer(segment, 200)


async def _body(request: web.Request) -> dict[str, Any] | ApiError:
    if not is_json_content_type(request.headers.get("Content-Type")):
        return INVALID_FORMAT
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return INVALID_FORMAT
    return doc if isinstance(doc, dict) else INVALID_FORMAT


def _new_segment(context: EmulatorContext, doc: dict[str, Any]) -> Segment | ApiError:
    unknown = sorted(set(doc) - {"name", "included_filters"})
    if unknown:
        return _invalid(f"{unknown[0]}: is not a field of a create request")
    name = _name(doc.get("name"))
    if isinstance(name, ApiError):
        return name
    group = filters.check_definition(doc.get("included_filters"))
    if isinstance(group, ApiError):
        return group
    clash = _unique(context, None, name, group) or _cap(context)
    if clash is not None:
        return clash
    now = now_iso()
    return Segment(
        id=new_object_id(),
        name=name,
        created_time=now,
        updated_time=now,
        type=FILTER_TYPE,
        description=describe(group),
        included_filters=group,
        definition_key=filters.definition_key(group),
    )


def _updatable(context: EmulatorContext, segment_id: str) -> Segment | ApiError:
    segment = context.store.by_id(segment_id)
    if segment is None:
        message = f"Custom segment not found with the given id: {segment_id}"
        return ApiError(404, "Entity Not Found", message)
    if segment.type != FILTER_TYPE or segment.archived:
        return ApiError(
            403,
            "Forbidden operation",
            "Update isn't supported for file-segments, internally created custom-segments, "
            "custom-segments imported from Analyze and archived custom-segments.",
        )
    return segment


def _checked_update(
    context: EmulatorContext, segment: Segment, doc: dict[str, Any]
) -> tuple[str, dict[str, Any]] | ApiError:
    unknown = sorted(set(doc) - {"name", "included_filters", "updated_by"})
    if unknown:
        return _invalid(f"{unknown[0]}: is not a field of an update request")
    name = _name(doc["name"]) if "name" in doc else segment.name
    if isinstance(name, ApiError):
        return name
    updated_by = doc.get("updated_by")
    if "updated_by" in doc and not (isinstance(updated_by, str) and _EMAIL.fullmatch(updated_by)):
        return _invalid("updated_by: must be an email address")
    group = filters.check_definition(doc.get("included_filters"))
    if isinstance(group, ApiError):
        return group
    clash = _unique(context, segment, name, group)
    return clash if clash is not None else (name, group)


def _name(value: Any) -> str | ApiError:
    if not isinstance(value, str) or not value.strip():
        return _invalid("name: must be a non-empty string, not only whitespace")
    if "<" in value or ">" in value:
        return _invalid("name: must not contain HTML")
    return value


def _unique(
    context: EmulatorContext, itself: Segment | None, name: str, group: dict[str, Any]
) -> ApiError | None:
    if any(s is not itself for s in context.store.by_name(name)):
        message = f"Another custom-segment already exists with the same name: {name}."
        return ApiError(409, "Resource not created", message)
    holder = context.store.by_definition(filters.definition_key(group))
    if holder is None or holder is itself:
        return None
    return ApiError(
        409,
        "Resource not created",
        f"Another custom-segment already exists containing the given filters: {holder.name}.",
        extras={"existing_cs_name": holder.name, "existing_cs_id": holder.id},
    )


def _cap(context: EmulatorContext) -> ApiError | None:
    limit = context.knobs.active_segments_limit
    active = context.store.active_count()
    if active < limit:
        return None
    return ApiError(
        429,
        "Too Many Requests",
        "Total active segments limit breached. Request rejected!",
        extras={"actual_count": active + 1, "limit": limit},
    )


def _invalid(detail: str) -> ApiError:
    return ApiError(400, "Invalid Request", f"{detail}. {INVALID_HINT}")


def _answer(segment: Segment, status: int) -> web.Response:
    body = {"data": segment.segment_object(), "response_id": new_request_id()}
    return json_response({**body, "type": "custom_segment"}, status=status)


def describe(group: dict[str, Any]) -> str:
    """The human-readable `description` (§5.1), e.g. "Name in [a, b] and did MOE_X atleast 1"."""
    parts = [_describe_filter(f) for f in group["filters"]]
    return f" {group['filter_operator']} ".join(parts)


def _describe_filter(item: dict[str, Any]) -> str:
    if item["filter_type"] == "actions":
        did = "did" if item["executed"] else "did not do"
        execution = item["execution"]
        when = item["primary_time_range"]
        count = f"{execution['type']} {execution['count']}"
        return f"{did} {item['action_name']} {count} ({when['type']})"
    negate = "not " if item["negate"] else ""
    value = item.get("value", "")
    return f"{item['name']} {negate}{item['operator']} {value}".rstrip()
