"""The receiver of file-segment results (§3.3 callback, §6 v1 callback).

`segments callbacks --port 9000` runs it until SIGINT/SIGTERM: every POST (to any path) is one
result; it is logged as one line (JSON with --json), counted in
`cohort_streamer_segment_callbacks_total{status}` on `GET /metrics` (status "invalid" for a
body that is not a JSON object with a `status`), kept for `GET /results`, and answered 200
as the API requires. `segments file ... --wait` runs the same receiver in its own process and
returns when the result for its segment arrives.

A callback is read up to CALLBACK_CAP_BYTES (a result is a few hundred bytes); anyone who can
reach the port can post one, so nothing in it is trusted beyond being logged and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CALLBACK_CAP_BYTES = 64 * 1024
KEPT_RESULTS = 1000
DOCUMENTED_STATUSES = (201, 400, 409, 500)  # §3.3 and §6 (409: a v1 duplicate)


class CallbackReceiver:
    def __init__(self, as_json: bool = False, echo: bool = True) -> None:
        self.results: list[dict[str, Any]] = []
        self.registry = CollectorRegistry()
        self.received = Counter(
            "cohort_streamer_segment_callbacks",
            "File-segment results received, by the status they report",
            ["status"],
            registry=self.registry,
        )
        self._as_json = as_json
        self._echo = echo
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful with port 0)."""
        app = web.Application(client_max_size=CALLBACK_CAP_BYTES)
        app.add_routes(
            [
                web.get("/metrics", self._metrics),
                web.get("/results", self._results),
                web.post("/{tail:.*}", self._receive),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.create_server((host, port))
        await web.SockSite(self._runner, sock).start()
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, segment_name: str, after: int, timeout: float) -> dict[str, Any]:
        """The first result for `segment_name` among those received after the `after`-th."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: self._find(segment_name, after) is not None),
                timeout,
            )
            found = self._find(segment_name, after)
        assert found is not None
        return found

    def _find(self, segment_name: str, after: int) -> dict[str, Any] | None:
        matching = (r for r in self.results[after:] if r.get("segment_name") == segment_name)
        return next(matching, None)

    async def _receive(self, request: web.Request) -> web.Response:
        try:
            doc = orjson.loads(await request.read())
        except (orjson.JSONDecodeError, web.HTTPRequestEntityTooLarge):
            doc = None
        if not isinstance(doc, dict) or "status" not in doc:
            self.received.labels(status="invalid").inc()
            return web.json_response({"error": "expected a JSON result with a status"}, status=400)
        self.received.labels(status=_status_label(doc["status"])).inc()
        self._log(doc)
        async with self._arrived:
            self.results.append(doc)
            del self.results[:-KEPT_RESULTS]
            self._arrived.notify_all()
        return web.json_response({"status": "received"})

    def _log(self, doc: dict[str, Any]) -> None:
        if not self._echo:
            return
        if self._as_json:
            print(orjson.dumps(doc).decode(), flush=True)
            return
        fields = ("status", "segment_name", "request_id", "values_found", "values_processed",
                  "user_count", "error_message")  # fmt: skip
        print("callback " + " ".join(f"{f}={doc[f]!r}" for f in fields if f in doc), flush=True)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _results(self, request: web.Request) -> web.Response:
        return web.json_response({"results": self.results})


def _status_label(status: Any) -> str:
    """The documented statuses by name; anything else is "other", so a stranger posting
    made-up statuses cannot grow the metric without bound."""
    return str(status) if status in DOCUMENTED_STATUSES else "other"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = "receive file-segment results: log them and count them on /metrics"
    parser = sub.add_parser("callbacks", help=help_text, description=help_text)
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="log each result as one JSON line")  # fmt: skip
    parser.set_defaults(segments_server=serve)


def serve(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_serve(args.host, args.port, args.json))
    except OSError as exc:
        print(f"cohort-streamer segments callbacks: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror}", file=sys.stderr)  # fmt: skip
        return 2
    return 0


async def _serve(host: str, port: int, as_json: bool) -> None:
    receiver = CallbackReceiver(as_json=as_json)
    bound = await receiver.start(host, port)
    # stderr: stdout holds only results, one per line
    print(f"receiving callbacks on http://{host}:{bound}/ (metrics on /metrics)", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await receiver.stop()
