"""Inspection and control endpoints under `/_emulator/` (no authentication; test use only).

- `GET  /_emulator/health` -> `{"status": "ok"}`
- `GET  /_emulator/config` -> the knobs (config.knobs_to_json)
- `POST /_emulator/config` with any subset of the knobs -> the knobs after the change;
  an unknown knob or a bad value -> 400 `{"error": "..."}` and nothing changes
- `GET  /_emulator/cohorts` -> `{"cohorts": {cohort_id: {segment_id, name, partner,
  description, archived, member_count, created_time, updated_time}}}`
- `GET  /_emulator/cohorts/{cohort_id}/members` -> `{"cohort_id", "segment_id", "count",
  "members": [sorted uids]}`; unknown cohort -> 404 `{"error": "..."}`
- `GET  /_emulator/segments/{segment_id}/members` -> `{"segment_id", "count", "members"}` for
  any segment (file segments have no cohort id); unknown id -> 404
- `GET  /_emulator/stats[?timestamps=1]` -> stats.Stats.to_json
- `POST /_emulator/reset` with optional `{"knobs": true}` -> clears segments, statistics and
  the rate window, reseeds the fault RNG; restores the start-up knobs only when asked
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .config import knobs_to_json, update_knobs
from .context import CONTEXT
from .responses import json_response

PREFIX = "/_emulator"


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await request.read()
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError("body is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise ValueError("body must be a JSON object")
    return doc


def _bad_request(message: str) -> web.Response:
    return json_response({"error": message}, status=400)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def get_config(request: web.Request) -> web.Response:
    return json_response(knobs_to_json(request.app[CONTEXT].knobs))


async def post_config(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    try:
        knobs = update_knobs(context.knobs, await _json_object(request))
    except ValueError as exc:
        return _bad_request(str(exc))
    context.set_knobs(knobs)
    return json_response(knobs_to_json(knobs))


async def cohorts(request: web.Request) -> web.Response:
    return json_response({"cohorts": request.app[CONTEXT].store.cohorts_json()})


async def members(request: web.Request) -> web.Response:
    cohort_id = request.match_info["cohort_id"]
    segment = request.app[CONTEXT].store.by_cohort(cohort_id)
    if segment is None:
        return json_response({"error": f"unknown cohort: {cohort_id}"}, status=404)
    return json_response(
        {
            "cohort_id": cohort_id,
            "segment_id": segment.id,
            "count": len(segment.members),
            "members": sorted(segment.members),
        }
    )


async def segment_members(request: web.Request) -> web.Response:
    segment_id = request.match_info["segment_id"]
    segment = request.app[CONTEXT].store.by_id(segment_id)
    if segment is None:
        return json_response({"error": f"unknown segment: {segment_id}"}, status=404)
    members = sorted(segment.members)
    return json_response({"segment_id": segment_id, "count": len(members), "members": members})


async def stats(request: web.Request) -> web.Response:
    include_times = request.query.get("timestamps", "") in ("1", "true", "yes")
    return json_response(request.app[CONTEXT].stats.to_json(include_times))


async def reset(request: web.Request) -> web.Response:
    try:
        options = await _json_object(request)
    except ValueError as exc:
        return _bad_request(str(exc))
    context = request.app[CONTEXT]
    context.reset(restore_knobs=options.get("knobs") is True)
    return json_response({"status": "reset", "knobs": knobs_to_json(context.knobs)})


def routes() -> list[web.RouteDef]:
    return [
        web.get(f"{PREFIX}/health", health),
        web.get(f"{PREFIX}/config", get_config),
        web.post(f"{PREFIX}/config", post_config),
        web.get(f"{PREFIX}/cohorts", cohorts),
        # `.+` so cohort ids holding "/" (sent percent-encoded) still reach the handler.
        web.get(f"{PREFIX}/cohorts/{{cohort_id:.+}}/members", members),
        web.get(f"{PREFIX}/segments/{{segment_id}}/members", segment_members),
        web.get(f"{PREFIX}/stats", stats),
        web.post(f"{PREFIX}/reset", reset),
    ]
