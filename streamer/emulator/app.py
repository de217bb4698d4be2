"""The aiohttp application: routes of the emulated MoEngage API and of the inspection API."""

from __future__ import annotations

from aiohttp import web

from . import admin, cohortsync, filter_segments, segments
from .config import EmulatorConfig
from .context import CONTEXT, EmulatorContext


def create_app(config: EmulatorConfig) -> web.Application:
    # client_max_size only bounds request.read() (v2 and /_emulator bodies); Cohort Sync reads
    # its body itself against the run-time `max_payload_bytes` knob.
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[CONTEXT] = EmulatorContext(config)
    app.add_routes(
        [
            web.post(cohortsync.PATH, cohortsync.handle),
            web.get("/v3/custom-segments", segments.list_segments),
            web.get("/v3/custom-segments/{segment_id}", segments.get_segment),
            web.post("/v3/custom-segments", filter_segments.create),
            web.patch("/v3/custom-segments/{segment_id}", filter_segments.update),
            web.patch("/v2/custom-segments/archive", segments.archive),
            web.patch("/v2/custom-segments/unarchive", segments.unarchive),
            *admin.routes(),
        ]
    )
    return app
