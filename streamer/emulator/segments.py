"""v3 list/get of every segment (§5.4, §5.6) and v2 archive/unarchive (§4).

Choices where the reference is silent:
- v3 GETs check credentials (see auth.py) but not `Content-Type`, as they carry no body.
- `GET /v3/custom-segments/{id}` answers with the documented list shape (`data` is an array of
  one item); for a filter segment that item also carries `updated_time`, `description` and
  `included_filters` (§8.11: our reading, so a definition can be read back); an unknown id
  gets 404 with the v3 envelope, code "Entity Not Found" (§5.3 wording),
  although the spec declares no 404 for this GET.
- list/get items carry `archived` besides the documented fields, so archive state is visible.
- v2 archive/unarchive: `name` is required (schema), `cs_id` wins when present. When several
  segments share the name, the oldest one whose state would change is chosen. Archiving an
  archived segment, or unarchiving an active one, answers 400 "Invalid Request". A body that is
  not JSON (or not application/json) is 400 / 415 in the `{"title","description"}` envelope.
  Unarchiving when the active segments cap is reached is refused with 429, as a create is
  (§1.3: the cap counts active segments of every type; archiving frees a slot).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from streamer import segment_limits as quotas

from . import auth, v3gate
from .context import CONTEXT, EmulatorContext
from .errors import ApiError, new_request_id
from .responses import json_response, v2_error, v3_error
from .state import Segment
from .validation import is_json_content_type


def _v3_page(data: list[dict[str, Any]]) -> web.Response:
    return json_response({"data": data, "response_id": new_request_id(), "type": "custom_segment"})


async def list_segments(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    problem = v3gate.admit(request, context, "list", quotas.V3_LIST)
    if problem is not None:
        return v3_error(problem)
    name = request.query.get("name")
    found = context.store.by_name(name) if name is not None else context.store.segments()
    return _v3_page([s.summary() for s in found])


async def get_segment(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    problem = v3gate.admit(request, context, "get", quotas.V3_GET)
    if problem is not None:
        return v3_error(problem)
    segment_id = request.match_info["segment_id"]
    segment = context.store.by_id(segment_id)
    if segment is None:
        message = f"Custom segment not found with the given id: {segment_id}"
        return v3_error(ApiError(404, "Entity Not Found", message))
    return _v3_page([segment.detail()])


async def archive(request: web.Request) -> web.Response:
    return await _set_archived(request, archived=True)


async def unarchive(request: web.Request) -> web.Response:
    return await _set_archived(request, archived=False)


async def _set_archived(request: web.Request, archived: bool) -> web.Response:
    context = request.app[CONTEXT]
    context.stats.segments_api_requests += 1
    knobs = context.knobs
    problem = auth.forced_failure(knobs.fail_auth) or auth.check_v2(
        request.headers, context.workspace_id, knobs.api_key
    )
    if problem is not None:
        return v2_error(problem)
    if not is_json_content_type(request.headers.get("Content-Type")):
        return v2_error(ApiError(415, "Unsupported Media Type", "Content type is not supported"))
    target = _parse_target(await request.read())
    if isinstance(target, ApiError):
        return v2_error(target)
    segment = _find(context, *target, archived=archived)
    if isinstance(segment, ApiError):
        return v2_error(segment)
    limit = knobs.active_segments_limit
    if not archived and segment.archived and context.store.active_count() >= limit:
        message = f"Total active segments limit breached: {limit}. Request rejected!"
        return v2_error(ApiError(429, "Too Many Requests", message))
    return _flip(segment, archived)


def _parse_target(body: bytes) -> tuple[str, str | None] | ApiError:
    """(name, cs_id) from a `SegmentNameRequestV2` body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ApiError(400, "Invalid Request", "Request body is not valid JSON")
    if not isinstance(doc, dict):
        return ApiError(400, "Invalid Request", "Request body must be a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        return ApiError(400, "Invalid Request", "name is required")
    cs_id = doc.get("cs_id")
    if cs_id is not None and (not isinstance(cs_id, str) or not cs_id):
        return ApiError(400, "Invalid Request", "cs_id must be a non-empty string")
    return name, cs_id


def _find(
    context: EmulatorContext, name: str, cs_id: str | None, archived: bool
) -> Segment | ApiError:
    if cs_id is not None:
        segment = context.store.by_id(cs_id)
        if segment is None:
            return ApiError(
                404, "Entity Not Found", f"Segment not found with the given cs_id: {cs_id}"
            )
        return segment
    matches = context.store.by_name(name)
    if not matches:
        return ApiError(404, "Entity Not Found", f"Segment not found with the given name: {name}")
    changing = [s for s in matches if s.archived != archived]
    return (changing or matches)[0]


def _flip(segment: Segment, archived: bool) -> web.Response:
    if segment.archived == archived:
        state = "archived" if archived else "not archived"
        return v2_error(
            ApiError(400, "Invalid Request", f"Segment is already {state}: {segment.name}")
        )
    segment.archived = archived
    verb = "archived" if archived else "unarchived"
    return json_response(
        {
            "message": f"Successfully {verb} the custom segment",
            "success": True,
            "cs_name": segment.name,
            "cs_id": segment.id,
        },
        status=202,
    )
