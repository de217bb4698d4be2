"""The operator's HTTP port: /metrics for Prometheus, /healthz and /readyz for Kubernetes."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# (ok, reason): a probe answers in one short JSON line, 200 when ok, 503 otherwise
Probe = Callable[[], tuple[bool, str]]


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        alive: Probe,
        ready: Probe,
    ) -> None:
        self._host, self._port = host, port
        self._registry = registry
        self._alive, self._ready = alive, ready
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", lambda _r: _answer(self._alive()))
        app.router.add_get("/readyz", lambda _r: _answer(self._ready()))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:  # port 0 in tests: report the one the OS picked
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _answer(result: tuple[bool, str]) -> web.Response:
    ok, reason = result
    body = orjson.dumps({"status": "ok" if ok else "fail", "reason": reason})
    return web.Response(body=body, status=200 if ok else 503, content_type="application/json")
