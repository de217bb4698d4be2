"""The aiohttp application: routes of the emulated MoEngage API and of the inspection API."""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import admin, cohortsync, csv_v1, file_segments, filter_segments, segments
from .config import EmulatorConfig
from .context import CONTEXT, EmulatorContext

FILE_PATH = "/v2/custom-segments/file-segment"


def create_app(config: EmulatorConfig) -> web.Application:
    # client_max_size only bounds request.read() (v2 and /_emulator bodies); Cohort Sync reads
    # its body itself against the run-time `max_payload_bytes` knob.
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[CONTEXT] = EmulatorContext(config)
    app.on_cleanup.append(_cancel_jobs)
    app.add_routes(
        [
            web.post(cohortsync.PATH, cohortsync.handle),
            web.get("/v3/custom-segments", segments.list_segments),
            web.get("/v3/custom-segments/{segment_id}", segments.get_segment),
            web.post("/v3/custom-segments", filter_segments.create),
            web.patch("/v3/custom-segments/{segment_id}", filter_segments.update),
            web.post(FILE_PATH, file_segments.handler("create")),
            web.put(f"{FILE_PATH}/add-users", file_segments.handler("add")),
            web.put(f"{FILE_PATH}/remove-users", file_segments.handler("remove")),
            web.put(f"{FILE_PATH}/replace", file_segments.handler("replace")),
            web.post(csv_v1.PATH, csv_v1.handle),
            web.patch("/v2/custom-segments/archive", segments.archive),
            web.patch("/v2/custom-segments/unarchive", segments.unarchive),
            *admin.routes(),
        ]
    )
    return app


async def _cancel_jobs(app: web.Application) -> None:
    """Stopping the emulator ends the file jobs still downloading or calling back."""
    jobs = list(app[CONTEXT].jobs)
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
