"""The operator's HTTP port: /metrics for Prometheus, /healthz and /readyz for Kubernetes.

The port is bound by listen() at start, before anything connects, so a port in use or a host
that is not this machine's is a configuration error (exit 2) rather than a crash after Kafka.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamer.config import ConfigError

# (ok, reason): a probe answers in one short JSON line, 200 when ok, 503 otherwise
Probe = Callable[[], tuple[bool, str]]
BACKLOG = 128


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address `host` resolves to, as asyncio would bind them.

    Raises ConfigError naming server.host or server.port when that is impossible.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"server.host: cannot resolve {host} ({_reason(exc)}); use an IP address such as "
            "0.0.0.0 or a name of this machine"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(addresses):
            sockets.append(_bound(family, kind, proto, address))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(_bind_error(host, port, exc)) from None
    return sockets


def _bound(family: int, kind: int, proto: int, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        # like asyncio: restart without waiting out TIME_WAIT; IPv6 does not shadow IPv4
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"server.port: {port} is already in use on {host}; choose a free port"
    if exc.errno == errno.EACCES:
        return f"server.port: {port} needs privileges this process lacks; use a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"server.host: {host} is not an address of this machine; use 0.0.0.0 or one of its"
    return f"server.host, server.port: cannot listen on {host} port {port} ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


class HealthServer:
    def __init__(
        self,
        sockets: list[socket.socket],
        registry: CollectorRegistry,
        alive: Probe,
        ready: Probe,
    ) -> None:
        self._sockets = sockets
        self._registry = registry
        self._alive, self._ready = alive, ready
        self._runner: web.AppRunner | None = None
        # port 0 in tests: report the one the OS picked
        self.port: int = sockets[0].getsockname()[1]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        for sock in self._sockets:
            await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return await _answer(self._alive())

    async def _readyz(self, _request: web.Request) -> web.Response:
        return await _answer(self._ready())

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _answer(result: tuple[bool, str]) -> web.Response:
    ok, reason = result
    body = orjson.dumps({"status": "ok" if ok else "fail", "reason": reason})
    return web.Response(body=body, status=200 if ok else 503, content_type="application/json")
