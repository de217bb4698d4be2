"""The emulator for the benchmark: `cohort-streamer emulator` in its own process, plus a recorder.

`python -m tests.bench.emulator [--record-uids] <cohort-streamer emulator flags>` runs the very
same server code (streamer.emulator.cli) and additionally keeps, for each accepted request, its
wall-clock time, cohort, action, member count and body size, the time and status of every
refused one, and with --record-uids the time each (cohort, action, uid) was first applied.
`GET /_bench/requests`, `GET /_bench/refused` and `GET /_bench/acks` return them. That is what
makes the latency figure exact per event (the event's `ts` to the moment the API applied its
change), the body fill measurable per request and 429s placeable in time; the emulator's own
/_emulator/stats only keeps totals.

The hooks wrap SegmentStore.apply and Stats.record_accepted, which the Cohort Sync handler
calls back to back, without an await in between, for every accepted request, and
Stats.record_status, which it calls for every answer.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from aiohttp import web

from streamer.cli import main as cli_main
from streamer.emulator import server
from streamer.emulator.state import SegmentStore
from streamer.emulator.stats import Stats
from streamer.emulator.validation import CohortRequest


class Recorder:
    def __init__(self, record_uids: bool) -> None:
        self.record_uids = record_uids
        self.requests: list[tuple[float, str, str, int, int]] = []
        self.acks: dict[str, float] = {}  # "cohort action uid" -> first applied, epoch s
        self.refused: list[tuple[float, int]] = []  # (epoch s, status) of every non-2xx answer
        self._last: CohortRequest | None = None

    def applied(self, request: CohortRequest) -> None:
        self._last = request
        if self.record_uids:
            now = time.time()
            prefix = f"{request.cohort_id} {request.action} "
            for uid in request.uids:
                self.acks.setdefault(prefix + uid, now)

    def accepted(self, body_bytes: int) -> None:
        req, self._last = self._last, None
        if req is not None:
            row = (time.time(), req.cohort_id, req.action, len(req.uids), body_bytes)
            self.requests.append(row)

    def answered(self, status: int) -> None:
        if not 200 <= status < 300:
            self.refused.append((time.time(), status))


RECORDER = Recorder(record_uids=False)


def _install_hooks() -> None:
    apply = SegmentStore.apply
    record_accepted = Stats.record_accepted
    record_status = Stats.record_status

    def hooked_apply(self: SegmentStore, request: CohortRequest) -> int:
        RECORDER.applied(request)
        return apply(self, request)

    def hooked_accepted(
        self: Stats, now: float, action: str, members: int, body_bytes: int, changed: int
    ) -> None:
        RECORDER.accepted(body_bytes)
        record_accepted(self, now, action, members, body_bytes, changed)

    def hooked_status(self: Stats, status: int) -> None:
        RECORDER.answered(status)
        record_status(self, status)

    SegmentStore.apply = hooked_apply  # type: ignore[method-assign]
    Stats.record_accepted = hooked_accepted  # type: ignore[method-assign]
    Stats.record_status = hooked_status  # type: ignore[method-assign]

    create_app = server.create_app

    def create_app_with_routes(*args: Any, **kwargs: Any) -> web.Application:
        app = create_app(*args, **kwargs)
        app.router.add_get("/_bench/requests", _requests)
        app.router.add_get("/_bench/acks", _acks)
        app.router.add_get("/_bench/refused", _refused)
        return app

    server.create_app = create_app_with_routes


async def _requests(request: web.Request) -> web.Response:
    keys = ("t", "cohort", "action", "members", "bytes")
    rows = [dict(zip(keys, row, strict=True)) for row in RECORDER.requests]
    return web.Response(body=orjson.dumps(rows), content_type="application/json")


async def _acks(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(RECORDER.acks), content_type="application/json")


async def _refused(request: web.Request) -> web.Response:
    rows = [{"t": t, "status": status} for t, status in RECORDER.refused]
    return web.Response(body=orjson.dumps(rows), content_type="application/json")


def main(argv: list[str]) -> int:
    if "--record-uids" in argv:
        argv = [a for a in argv if a != "--record-uids"]
        RECORDER.record_uids = True
    _install_hooks()
    return cli_main(["emulator", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
