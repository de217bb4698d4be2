"""Running the emulator: on the caller's event loop, or in a background thread for sync code.

- async: `handle = await start_emulator(config)`, then `handle.url`, `await handle.stop()`
  (or `async with await start_emulator(config) as handle:`);
- sync: `with EmulatorThread(config) as emulator:` runs it on its own thread and loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

from aiohttp import web

from .app import create_app
from .config import EmulatorConfig
from .context import CONTEXT, EmulatorContext

# Handlers sleeping on `latency_ms` must not hold a shutdown for aiohttp's default minute.
SHUTDOWN_TIMEOUT_SECONDS = 2.0
STARTUP_TIMEOUT_SECONDS = 10.0


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class EmulatorHandle:
    """A running emulator on the current event loop. `stop()` is safe to call twice."""

    def __init__(self, runner: web.AppRunner, app: web.Application, host: str, port: int):
        self._runner: web.AppRunner | None = runner
        self.app = app
        self.host = host
        self.port = port
        self.url = f"http://{_url_host(host)}:{port}"

    @property
    def context(self) -> EmulatorContext:
        """Direct access to state and knobs; only from the loop the emulator runs on."""
        return self.app[CONTEXT]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> EmulatorHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_emulator(config: EmulatorConfig) -> EmulatorHandle:
    """Listen on `config.host:config.port` (port 0 picks a free one) and serve."""
    app = create_app(config)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()
    try:
        sock = _listening_socket(config.host, config.port)
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return EmulatorHandle(runner, app, config.host, sock.getsockname()[1])


class EmulatorThread:
    """The emulator on its own thread and event loop, for synchronous tests and the demo.

    Talk to it over HTTP (`url`); its state lives on the other thread's loop.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._handle: EmulatorHandle | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def url(self) -> str:
        return self._running().url

    def _running(self) -> EmulatorHandle:
        if self._handle is None:
            raise RuntimeError("emulator thread is not running")
        return self._handle

    def start(self) -> EmulatorThread:
        if self._thread is not None:
            return self
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="moengage-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT_SECONDS):
            raise RuntimeError("emulator did not start in time")
        if self._error is not None:
            raise RuntimeError("emulator failed to start") from self._error
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join(SHUTDOWN_TIMEOUT_SECONDS + 5)
        self._handle = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._handle = await start_emulator(self.config)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self._handle.stop()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
