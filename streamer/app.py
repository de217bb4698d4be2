"""`cohort-streamer run`: wire the stages together and run until SIGTERM/SIGINT.

The main loop only consumes and ingests; the dispatcher (pipeline.py) and the housekeeping task
(commits, DLQ callbacks, lag, gauges) run beside it on the same event loop. Shutdown follows
DESIGN.md: stop fetching, flush every buffer (with a deadline), commit, leave the group, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
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
from streamer.batch import SourceMessage
from streamer.client import CohortSyncClient
from streamer.committer import Committer
from streamer.config import ConfigError, Credentials, Settings, load_credentials, load_settings
from streamer.dlq import DeadLetterWriter
from streamer.gate import ApiGate
from streamer.health import HealthServer, listen
from streamer.heap import Trimmer, held_bytes, release_heap
from streamer.kafkacheck import check_kafka_clients
from streamer.metrics import Metrics
from streamer.pipeline import Pipeline
from streamer.ratelimit import RateLimiter
from streamer.send import Sender
from streamer.source import FatalKafkaError, KafkaSource, StartupError

log = logging.getLogger("streamer")

LAG_INTERVAL_SECONDS = 5.0
HOUSEKEEPING_TICK_SECONDS = 0.05
STALE_LOOP_SECONDS = 30.0
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
        self.source = KafkaSource(
            settings.kafka, self.pipeline, settings.deadlines.revoke_flush_seconds
        )
        tracker = self.pipeline.tracker
        self.committer = Committer(self.source, tracker, self.metrics)
        self.backlog = BacklogWatch(self.source, tracker, settings.kafka.consume_batch_size)
        self.health = HealthServer(listeners, self.metrics.registry, self._alive, self._ready)
        self.heap = Trimmer(release_heap())
        self._paused: set[tuple[str, int]] = set()
        self._heartbeat = time.monotonic()
        self._last_lag = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then shut down cleanly. Raises StartupError early."""
        await self.client.start()
        await self.health.start()
        try:
            await self.source.start()
            await self._check_dlq()
            await self.source.subscribe()
            self.metrics.up.set(1)
            self.metrics.rate_limit.set(self.limiter.limit)
            background = [
                asyncio.create_task(self.pipeline.dispatch_forever(), name="dispatcher"),
                asyncio.create_task(self._housekeeping_forever(), name="housekeeping"),
            ]
            await self._consume_until(stop)
            await self._shutdown()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        finally:
            self.metrics.up.set(0)
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
            self._heartbeat = time.monotonic()
            if messages:
                self._ingest(messages)
            await self._apply_backpressure()
            self.pipeline.backlogged = bool(self._paused) or await self.backlog.behind(
                len(messages)
            )

    def _ingest(self, messages: list[Message]) -> None:
        """A consumed batch into the pipeline. (Its own function, so that no local variable
        keeps the batch's Message objects alive while the loop waits for the next one.)"""
        good = [m for m in messages if m.error() is None]
        if len(good) < len(messages):
            _log_errors(messages)
        # a message without error always has topic, partition and offset set
        self.pipeline.ingest(cast(list[SourceMessage], good))
        self.dlq.poll()


    async def _apply_backpressure(self) -> None:
        """Pause every assigned partition above a high-water mark; resume below the low one, or
        below the high one when the pipeline is stalled (see Pipeline.stalled)."""
        b = self.settings.batching
        p = self.pipeline
        assigned = set(self.pipeline.tracker.assigned())
        over = p.over_high_water
        under = p.buffered_events < b.low_water_events and p.buffered_bytes < b.low_water_bytes
        # below the high mark with nothing to send in full, waiting frees no memory: more events
        # may fill a body, while every request sent now would be a partial one
        under = under or (not over and p.stalled())
        want_paused = self.gate.blocked or over or (bool(self._paused) and not under)
        if want_paused:
            newly = sorted(assigned - self._paused)
            if newly:
                if not self._paused:
                    log.info(
                        "pausing consumption (buffered %d events, %d bytes, API unusable %s)",
                        p.buffered_events,
                        p.buffered_bytes,
                        self.gate.blocked,
                    )
                if await self.source.pause(newly):
                    self._paused |= set(newly)
            self._paused &= assigned
        elif self._paused and await self.source.resume(sorted(self._paused & assigned)):
            log.info("resuming consumption (buffered %d events)", p.buffered_events)
            self._paused = set()
        self.metrics.paused_partitions.set(len(self._paused))

    async def _housekeeping_forever(self) -> None:
        interval = self.settings.kafka.commit_interval_ms / 1000
        next_commit = time.monotonic() + interval
        while True:
            await asyncio.sleep(HOUSEKEEPING_TICK_SECONDS)
            self.dlq.poll()
            self._update_gauges()
            self.heap.observe(held_bytes(self.pipeline.buffered_bytes, len(self.pipeline.cohorts)))
            now = time.monotonic()
            if now >= next_commit:
                next_commit = now + interval
                await self.commit()
            if now - self._last_lag >= LAG_INTERVAL_SECONDS:
                self._last_lag = now
                await self._update_lag()
                if not self.source.reachable:
                    await self.source.probe()

    async def commit(self) -> None:
        await self.committer.commit()

    def _update_gauges(self) -> None:
        m, p = self.metrics, self.pipeline
        m.buffered_events.set(p.buffered_events)
        m.catching_up.set(1 if p.backlogged else 0)
        m.buffered_bytes.set(p.buffered_bytes)
        m.buffered_cohorts.set(p.cohorts.buffered)
        m.cohorts_tracked.set(len(p.cohorts))
        m.assigned_partitions.set(len(p.tracker.assigned()))
        m.rate_limit.set(self.limiter.limit)

    async def _update_lag(self) -> None:
        tracker = self.pipeline.tracker
        assigned = tracker.assigned()
        highs = await self.source.high_watermarks(assigned)
        positions = tracker.committed_offsets()
        self.metrics.consumer_lag.clear()
        for (topic, partition), high in highs.items():
            position = positions.get((topic, partition))
            if position is not None:
                lag = max(0, high - position)
                self.metrics.consumer_lag.labels(topic, str(partition)).set(lag)

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.deadlines.shutdown_flush_seconds
        await self.source.pause(sorted(self.pipeline.tracker.assigned()))
        self.pipeline.flush_everything = True
        drained = await self.pipeline.drain(None, deadline)
        if not drained:
            log.warning("shutdown deadline passed; unacknowledged changes will be redelivered")
        await self._wait_for_dlq(deadline)
        await self.commit()
        await self.pipeline.stop()
        self.pipeline.closing = True
        await self.source.close()  # leaves the group; its revoke commits what is left
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

    def _alive(self) -> tuple[bool, str]:
        stale = time.monotonic() - self._heartbeat
        if stale > STALE_LOOP_SECONDS:
            return False, f"main loop has not run for {stale:.0f}s"
        return True, "main loop running"

    def _ready(self) -> tuple[bool, str]:
        if self.gate.reason is not None:
            return False, self.gate.reason
        if not self.source.reachable:
            return False, "Kafka brokers unreachable"
        if not self.source.assignment_received:
            return False, "waiting for a partition assignment"
        dead_letters = self.dlq.problem()
        if dead_letters is not None:
            return False, dead_letters
        return True, f"{len(self.pipeline.tracker.assigned())} partition(s) assigned"


def _log_errors(messages: list[Message]) -> None:
    for message in messages:
        err = message.error()
        if err is not None:
            log.warning("consumer error: %s", err)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="YAML config file")


def run(args: argparse.Namespace) -> int:
    # every check that can fail on a configuration mistake, before anything connects
    try:
        settings = load_settings(args.config)
        check_kafka_clients(settings.kafka)
        load_credentials()
        listeners = listen(settings.server.host, settings.server.port)
    except ConfigError as exc:
        print(f"cohort-streamer: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    tune_gc()
    try:
        asyncio.run(_serve(settings, listeners))
    except StartupError as exc:
        print(f"cohort-streamer: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except FatalKafkaError as exc:
        # nothing past the last commit was lost: a restart (the pod's) redelivers it
        log.error("kafka reports a fatal error; exiting for a restart: %s", exc)
        return EXIT_FATAL
    return 0


# Young-generation threshold of the cyclic GC (CPython's default is 700 allocations): the
# net growth of tracked objects between automatic young collections.
GC_YOUNG_THRESHOLD = 1_000_000


def tune_gc() -> None:
    """Collect reference cycles rarely: the hot path allocates containers but makes no cycles.

    Measured when buffers still kept one tuple per event: with the default threshold the
    collector ran every few hundred events and walked every buffered entry, about a sixth of the
    catch-up CPU; at 50,000 its young collections cost 0.65 CPU-s per million events, at
    1,000,000 0.01 (gc.callbacks, the benchmark's catch-up). Buffers now hold Rust data, but
    each consumed batch still allocates thousands of Message objects. Freezing what start-up
    created keeps full collections off the (never freed) modules and config as well. The
    cycles a burst leaves are collected when it has drained (heap.release_heap).
    """
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def _serve(settings: Settings, listeners: list[socket.socket]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    streamer = Streamer(settings, listeners)
    # SIGHUP (a terminal closing, `kill -HUP` after rotating a Secret) re-reads the credentials;
    # its default action would kill the process without flushing or committing
    loop.add_signal_handler(signal.SIGHUP, streamer.reload_credentials)
    with contextlib.suppress(asyncio.CancelledError):
        await streamer.run(stop)
