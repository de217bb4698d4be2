"""`cohort-streamer run`: wire the stages together and run until SIGTERM/SIGINT.

The main loop only consumes, ingests and applies backpressure; the dispatcher (pipeline.py) and
the housekeeping task (commit interval, DLQ callbacks, gauges, lag) run beside it on the same
event loop. Shutdown: stop fetching, flush every buffer (with a deadline), wait for the DLQ,
commit, leave the group, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from confluent_kafka import Message

from streamer.backlog import BacklogWatch
from streamer.backpressure import PipelineState, Throttle
from streamer.batch import SourceMessage
from streamer.client import CohortSyncClient, credential_headers
from streamer.committer import Committer
from streamer.config import (
    ConfigError,
    Credentials,
    Settings,
    kafka_secrets,
    load_credentials,
    load_settings,
)
from streamer.dlq import DeadLetterWriter
from streamer.gate import ApiGate
from streamer.gauges import show_budget, show_demand, show_lag, show_pipeline
from streamer.gctune import tune_gc
from streamer.groupshare import GroupShare
from streamer.groupview import GroupReader
from streamer.health import HealthServer, listen
from streamer.heap import Trimmer, held_bytes, release_heap
from streamer.kafkacheck import check_kafka_clients
from streamer.logs import Redactor
from streamer.logs import configure as configure_logging
from streamer.metrics import Metrics
from streamer.pipeline import Pipeline
from streamer.probes import Probes
from streamer.ratelimit import RateLimiter
from streamer.send import Sender
from streamer.source import FatalKafkaError, KafkaSource, StartupError
from streamer.version import PYTHON_VERSION, VERSION

log = logging.getLogger("streamer")

LAG_INTERVAL_SECONDS = 5.0
HOUSEKEEPING_TICK_SECONDS = 0.05
EXIT_CONFIG = 2
EXIT_STARTUP = 3
EXIT_FATAL = 1


class Streamer:
    def __init__(
        self,
        settings: Settings,
        listeners: list[socket.socket],
        credentials: Callable[[], Credentials] = load_credentials,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        mo = settings.moengage
        self.limiter = RateLimiter(mo.rate_limit_per_minute, mo.rate_window_seconds)
        self.client = CohortSyncClient(mo.url, mo.timeout_seconds, credentials)
        self.dlq = DeadLetterWriter(settings.kafka, self.metrics)
        self.gate = ApiGate(self.metrics)
        sender = Sender(mo, self.client, self.limiter, self.dlq, self.metrics, self.gate)
        self.pipeline = Pipeline(settings, sender, self.limiter, self.dlq, self.metrics)
        self.source = KafkaSource(settings.kafka, settings.deadlines.revoke_flush_seconds)
        # the budget is the group's: this replica's share follows the group's load (from Kafka)
        self.group_reader = GroupReader(settings.kafka)
        self.group_share = GroupShare(
            mo.rate_limit_per_minute,
            self.group_reader.read,
            self.source.member_id,
            self.limiter,
            self.metrics,
        )
        show_budget(self.metrics, self.limiter)  # the share it starts at: the group's floor
        tracker = self.pipeline.tracker
        self.committer = Committer(
            self.source,
            self.pipeline,
            tracker,
            self.metrics,
            settings.kafka.commit_interval_ms / 1000,
        )
        self.throttle = Throttle(self.source, settings.batching, self.metrics)
        self.backlog = BacklogWatch(self.source, tracker, settings.kafka.consume_batch_size)
        self.probes = Probes(self.gate, self.source, self.dlq, tracker)
        self.health = HealthServer(
            listeners, self.metrics.registry, self.probes.alive, self.probes.ready
        )
        self.heap = Trimmer(release_heap())
        self._last_lag = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then shut down cleanly. Raises StartupError early."""
        await self.client.start()
        await self.health.start()
        try:
            await self.source.start()
            await self._check_dlq()
            await self.source.subscribe(self.committer)
            self.metrics.up.set(1)
            background = [
                asyncio.create_task(self.pipeline.dispatch_forever(), name="dispatcher"),
                asyncio.create_task(self._housekeeping_forever(), name="housekeeping"),
                asyncio.create_task(self.group_share.run_forever(), name="group-share"),
            ]
            await self._consume_until(stop)
            await self._shutdown()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        finally:
            self.metrics.up.set(0)
            self.group_share.close()
            self.group_reader.close()  # ends its child process, even mid-read
            await self.client.stop()
            await self.health.stop()

    async def _check_dlq(self) -> None:
        """A DLQ topic that is missing or not writable stops the start (exit 3), like a
        missing source topic (the consumer, not subscribed yet, is closed first)."""
        try:
            await self.dlq.start(self.settings.kafka.startup_timeout_seconds)
        except StartupError:
            await self.source.close()
            raise

    async def _consume_until(self, stop: asyncio.Event) -> None:
        batch = self.settings.kafka.consume_batch_size
        while not stop.is_set():
            # keep calling consume() while paused: it serves rebalances and keeps us in the group
            messages = await self.source.consume(batch, 0.1)
            self.probes.beat()
            if messages:
                self._ingest(messages)
            await self.throttle.apply(self._state(), set(self.pipeline.tracker.assigned()))
            behind = bool(self.throttle.paused) or await self.backlog.behind(len(messages))
            self.pipeline.track_backlog(behind)

    def _ingest(self, messages: list[Message]) -> None:
        """A consumed batch into the pipeline. (Its own function, so that no local variable
        keeps the batch's Message objects alive while the loop waits for the next one.)"""
        good = [m for m in messages if m.error() is None]
        if len(good) < len(messages):
            _log_errors(messages)
        # a message without error always has topic, partition and offset set
        self.pipeline.ingest(cast(list[SourceMessage], good))
        self.dlq.poll()

    def _state(self) -> PipelineState:
        p = self.pipeline
        return PipelineState(p.buffered_events, p.buffered_bytes, p.stalled(), self.gate.blocked)

    async def _housekeeping_forever(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_TICK_SECONDS)
            try:
                await self._housekeeping_tick()
            except Exception:
                # a bug, not an outside answer (those are handled where they arrive): commits
                # and DLQ callbacks must go on, so the next tick tries again
                log.exception("housekeeping failed; tried again next tick")

    async def _housekeeping_tick(self) -> None:
        """DLQ delivery callbacks, gauges, heap trimming, the commit interval; every
        LAG_INTERVAL_SECONDS the budget demand, lag and probes."""
        self.dlq.poll()
        show_pipeline(self.metrics, self.pipeline, self.limiter)
        self.heap.observe(held_bytes(self.pipeline.buffered_bytes, len(self.pipeline.cohorts)))
        await self.committer.tick()
        now = time.monotonic()
        if now - self._last_lag >= LAG_INTERVAL_SECONDS:
            self._last_lag = now
            show_demand(self.metrics, self.pipeline, self.limiter)
            await show_lag(self.metrics, self.pipeline, self.source)
            if not self.source.reachable:
                await self.source.probe()

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.deadlines.shutdown_flush_seconds
        await self.source.pause(sorted(self.pipeline.tracker.assigned()))
        self.pipeline.start_flush()
        drained = await self.pipeline.drain(None, deadline)
        if not drained:
            log.warning("shutdown deadline passed; unacknowledged changes will be redelivered")
        await self._wait_for_dlq(deadline)
        await self.committer.commit()
        await self.pipeline.stop()
        await self.source.close()  # leaves the group; the committer commits what a revoke frees
        log.info("stopped cleanly")

    async def _wait_for_dlq(self, deadline: float) -> None:
        """Serve DLQ delivery callbacks on this loop until all are confirmed or time is up."""
        end = max(deadline, time.monotonic() + 1.0)  # at least a moment, even past the deadline
        while self.dlq.pending and time.monotonic() < end:
            self.dlq.poll()
            await asyncio.sleep(0.02)
        self.dlq.poll()

    def reload_credentials(self) -> None:
        """SIGHUP: use the current credentials from now on (a rotated *_FILE Secret), without
        waiting for a 401. Unreadable credentials keep the previous ones."""
        try:
            self.client.reload_credentials()
        except ConfigError as exc:
            log.error("SIGHUP: cannot re-read credentials, keeping the previous ones: %s", exc)
            return
        log.info("SIGHUP: credentials re-read")


def _log_errors(messages: list[Message]) -> None:
    for message in messages:
        err = message.error()
        if err is not None:
            log.warning("consumer error: %s", err)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="YAML config file")


def run(args: argparse.Namespace) -> int:
    # every check that can fail on a configuration mistake, before anything connects
    redactor = Redactor()
    credentials = _scrubbed_credentials(redactor)
    try:
        settings = load_settings(args.config)
        redactor.add_secrets(kafka_secrets(settings.kafka))
        check_kafka_clients(settings.kafka)
        credentials()
        listeners = listen(settings.server.host, settings.server.port)
    except ConfigError as exc:
        print(f"cohort-streamer: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    repeats = configure_logging(settings.log_level, settings.log_format, redactor)
    log.info("cohort-streamer %s starting (python %s)", VERSION, PYTHON_VERSION)
    tune_gc()
    try:
        return _serve_until_stopped(settings, listeners, credentials)
    finally:
        repeats.flush()


def _scrubbed_credentials(redactor: Redactor) -> Callable[[], Credentials]:
    """load_credentials, teaching the log redactor each secret it reads (SIGHUP, a 401)."""

    def credentials() -> Credentials:
        creds = load_credentials()
        redactor.add_secrets(credential_headers(creds)[1])
        return creds

    return credentials


def _serve_until_stopped(
    settings: Settings, listeners: list[socket.socket], credentials: Callable[[], Credentials]
) -> int:
    try:
        asyncio.run(_serve(settings, listeners, credentials))
    except StartupError as exc:
        log.error("cannot start: %s", exc)  # a log line: in json format, every line is JSON
        return EXIT_STARTUP
    except FatalKafkaError as exc:
        # nothing past the last commit was lost: a restart (the pod's) redelivers it
        log.error("kafka reports a fatal error; exiting for a restart: %s", exc)
        return EXIT_FATAL
    return 0


async def _serve(
    settings: Settings, listeners: list[socket.socket], credentials: Callable[[], Credentials]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    streamer = Streamer(settings, listeners, credentials)
    # SIGHUP (a terminal closing, `kill -HUP` after rotating a Secret) re-reads the credentials;
    # its default action would kill the process without flushing or committing
    loop.add_signal_handler(signal.SIGHUP, streamer.reload_credentials)
    with contextlib.suppress(asyncio.CancelledError):
        await streamer.run(stop)
