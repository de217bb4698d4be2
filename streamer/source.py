"""The Kafka side of the pipeline: one thread owns the Consumer, and every call goes through it.

confluent-kafka is synchronous and its rebalance callbacks run inside consume(); funnelling
consume, commit, pause/resume and close through one single-thread executor means callbacks and
commits never race. Callbacks hand their work to the event loop and wait with a deadline; the
loop never waits on this thread synchronously, so that cannot deadlock. This module decides
nothing: what happens on a rebalance, and when offsets are committed, is the RebalanceHandler's
(committer.py); a revoke's commit runs here only because it must run on this thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamer.config import KafkaConfig
from streamer.logs import RDKAFKA_LOG
from streamer.offsets import TopicPartition as TP

log = logging.getLogger(__name__)
T = TypeVar("T")


class StartupError(Exception):
    """Kafka is not usable at start-up (unreachable broker, missing topic)."""


class FatalKafkaError(Exception):
    """librdkafka reports a fatal error: this consumer cannot continue (exit and restart)."""


def _raise_if_fatal(exc: KafkaException) -> None:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError) and err.fatal():
        raise FatalKafkaError(err.str()) from None


class CommitResult(NamedTuple):
    """What the broker stored of one commit, partition by partition."""

    done: dict[TP, int]
    failed: dict[TP, str]  # the reason, from librdkafka


# commits synchronously on the consumer thread (inside a rebalance callback)
CommitNow = Callable[[dict[TP, int]], CommitResult]


class RebalanceHandler(Protocol):
    """What is done on assignment changes. The async methods run on the event loop."""

    async def assigned(self, partitions: list[TP]) -> None: ...

    async def revoking(self, partitions: list[TP]) -> dict[TP, int]:
        """Flush what these partitions hold; returns the offsets to commit before release."""
        ...

    def commit_revoked(self, points: dict[TP, int], commit: CommitNow) -> None:
        """Runs on the consumer thread right after revoking(), before the partitions go."""
        ...

    async def lost(self, partitions: list[TP]) -> None: ...


def consumer_settings(config: KafkaConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        "queued.max.messages.kbytes": config.queued_max_messages_kbytes,
        # 4 MiB, not 8: the same catch-up throughput (~100k events/s on the benchmark) with
        # ~50 MB less peak RSS, as librdkafka's fetch buffers count toward the pod's memory
        "fetch.max.bytes": 4 * 1024 * 1024,
        # a sanity bound, not a buffer: a response takes the memory of its own size. At
        # librdkafka's default (100 MB) a record the broker accepted (up to its
        # socket.request.max.bytes, 100 MiB by default) could never be fetched, and its
        # partition would stop for good; so allow the most librdkafka can
        "receive.message.max.bytes": 2_147_483_647,
        "session.timeout.ms": 30000,
        "max.poll.interval.ms": 300000,
    }
    settings.update(config.consumer)
    # owned by the streamer (config validation refuses them in kafka.consumer)
    settings.update(
        {
            "group.id": config.group_id,
            "group.protocol": "classic",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    return settings


def commit_offsets(consumer: Consumer, points: dict[TP, int]) -> CommitResult:
    """Commit synchronously and report each partition's outcome.

    confluent-kafka raises for the whole call when any partition is refused, without saying
    which: then each partition is committed on its own, so one refused partition (a deleted
    topic, say) never holds back the commits of the others.
    """
    try:
        stored = _commit(consumer, points)
    except KafkaException as exc:
        if len(points) == 1:
            return CommitResult({}, {key: _reason(exc) for key in points})
        done: dict[TP, int] = {}
        failed: dict[TP, str] = {}
        for key, offset in points.items():
            single = commit_offsets(consumer, {key: offset})
            done.update(single.done)
            failed.update(single.failed)
        return CommitResult(done, failed)
    done, failed = {}, {}
    for answer in stored:
        key = (answer.topic, answer.partition)
        if key not in points:
            continue
        if answer.error is None:
            done[key] = points[key]
        else:
            failed[key] = str(answer.error)
    for key in points.keys() - done.keys() - failed.keys():
        failed[key] = "not in the broker's answer"
    return CommitResult(done, failed)


def _commit(consumer: Consumer, points: dict[TP, int]) -> list[TopicPartition]:
    offsets = [TopicPartition(t, p, o) for (t, p), o in points.items()]
    stored: list[TopicPartition] | None = consumer.commit(offsets=offsets, asynchronous=False)
    return stored or []


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


class KafkaSource:
    def __init__(self, config: KafkaConfig, revoke_deadline_seconds: float) -> None:
        self._config = config
        self._settings = consumer_settings(config)
        self._handler: RebalanceHandler | None = None  # set by subscribe()
        self._revoke_deadline = revoke_deadline_seconds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-consumer")
        self._consumer: Consumer | None = None
        self._member_id: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reachable = True
        self.assignment_received = False
        # bumped on every revoke/loss: a commit computed before it may name partitions we lost
        self.generation = 0

    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn)

    async def start(self) -> None:
        """Create the consumer, check the broker and topics (with a timeout)."""
        self._loop = asyncio.get_running_loop()
        settings = dict(self._settings)
        settings["error_cb"] = self._on_error
        settings["logger"] = RDKAFKA_LOG
        self._consumer = await self._call(lambda: Consumer(settings))
        await self._call(self._check_topics)

    async def subscribe(self, handler: RebalanceHandler) -> None:
        """Join the group: only once every start-up check passed, so a process that cannot
        start never makes the group rebalance. `handler` serves the assignment changes."""
        self._handler = handler
        await self._call(
            lambda: self._require().subscribe(
                list(self._config.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        )

    def _require(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("KafkaSource used before start()")
        return self._consumer

    def _check_topics(self) -> None:
        timeout = self._config.startup_timeout_seconds
        try:
            metadata = self._require().list_topics(timeout=timeout)
        except KafkaException as exc:
            raise StartupError(
                f"kafka.bootstrap_servers {self._config.bootstrap_servers}: no broker answered "
                f"within {timeout:g}s ({exc.args[0].str() if exc.args else exc})"
            ) from None
        missing = [t for t in self._config.topics if t not in metadata.topics]
        if missing:
            raise StartupError(f"kafka.topics: {', '.join(missing)} does not exist on the cluster")

    async def probe(self, timeout: float = 2.0) -> None:
        """After 'all brokers down': a metadata request that answers marks Kafka reachable."""

        def ask() -> None:
            try:
                self._require().list_topics(timeout=timeout)
            except KafkaException:
                return
            self.reachable = True

        await self._call(ask)

    async def consume(self, max_messages: int, timeout: float) -> list[Message]:
        """The next messages (maybe none). A non-fatal error is logged and yields none: the
        next call tries again. A fatal one (the consumer cannot go on) raises FatalKafkaError."""
        consumer = self._require()

        def consume() -> list[Message]:
            try:
                return consumer.consume(max_messages, timeout)
            except KafkaException as exc:
                _raise_if_fatal(exc)
                log.warning("kafka consume failed (retrying): %s", _reason(exc))
                return []

        return await self._call(consume)

    async def commit(self, points: dict[TP, int], generation: int) -> CommitResult | None:
        """Commit on the consumer thread unless a rebalance happened since `generation`.

        Returns None when skipped; otherwise which partitions the broker stored and which it
        refused (with the reason). Never raises for a broker's answer.
        """

        def commit() -> CommitResult | None:
            if generation != self.generation:
                return None
            return commit_offsets(self._require(), points)

        return await self._call(commit)

    async def pause(self, partitions: list[TP]) -> bool:
        """Pause fetching these partitions; False (logged) when librdkafka refused."""
        return await self._flow("pause", partitions)

    async def resume(self, partitions: list[TP]) -> bool:
        """Resume fetching these partitions; False (logged) when librdkafka refused."""
        return await self._flow("resume", partitions)

    async def _flow(self, verb: str, partitions: list[TP]) -> bool:
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return True

        def call() -> bool:
            try:
                getattr(self._require(), verb)(tps)
            except KafkaException as exc:  # e.g. a partition revoked meanwhile
                log.warning("kafka %s failed (tried again next loop): %s", verb, _reason(exc))
                return False
            return True

        return await self._call(call)

    async def high_watermarks(self, partitions: list[TP]) -> dict[TP, int]:
        """Cached high watermarks (from fetch responses; no broker round trip). A partition
        without one yet (no fetch answered since it was assigned) is left out."""

        def read() -> dict[TP, int]:
            consumer = self._require()
            marks: dict[TP, int] = {}
            for t, p in partitions:
                try:
                    _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                except KafkaException:
                    continue  # unknown, like a partition not fetched yet
                if high >= 0:
                    marks[(t, p)] = high
            return marks

        return await self._call(read)

    async def start_positions(self, partitions: list[TP], timeout: float) -> dict[TP, int]:
        """Where consumption of these partitions starts, asked of the broker (one round trip
        per partition): the committed offset, or where auto.offset.reset puts a partition
        without one (or whose committed offset retention has deleted). Partitions the broker
        does not answer for are left out."""
        from_end = self._settings.get("auto.offset.reset") in ("latest", "largest", "end")

        def ask() -> dict[TP, int]:
            consumer = self._require()
            tps = [TopicPartition(t, p) for t, p in partitions]
            try:
                stored = consumer.committed(tps, timeout=timeout)
            except KafkaException as exc:
                log.debug("committed offsets unavailable: %s", exc)
                return {}
            starts: dict[TP, int] = {}
            deadline = time.monotonic() + timeout
            for tp in stored:
                if time.monotonic() >= deadline:
                    break  # the rest is asked again later; the consume loop waits meanwhile
                try:
                    low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
                except KafkaException as exc:
                    log.debug("watermarks of %s[%d] unavailable: %s", tp.topic, tp.partition, exc)
                    continue
                if tp.error is None and tp.offset >= 0:
                    starts[(tp.topic, tp.partition)] = min(max(tp.offset, low), high)
                else:
                    starts[(tp.topic, tp.partition)] = high if from_end else low
            return starts

        return await self._call(ask)

    def member_id(self) -> str | None:
        """This consumer's member id in the group, as of its last assignment; None before it
        joined or once closed. Read when an assignment arrives, on the consumer thread: asking
        that thread now could wait out a revoke callback, which holds it while it waits on the
        event loop (a poller asking it would stall for the whole revoke flush)."""
        return self._member_id if self._consumer is not None else None

    async def close(self) -> None:
        """Leave the group (runs the revoke callback), then stop the thread."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await self._call(consumer.close)
        self._thread.shutdown(wait=True)

    # --- callbacks: these run on the consumer thread, inside consume() or close() ---

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.reachable = False
        log.warning("kafka: %s", err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.assignment_received = True
        # a rejoin after a lost session brings a new member id, and an assignment with it
        with contextlib.suppress(KafkaException, RuntimeError):
            self._member_id = consumer.memberid() or None
        self._run_on_loop(self._subscribed().assigned(tps), timeout=30)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.generation += 1
        handler = self._subscribed()
        points = self._run_on_loop(handler.revoking(tps), timeout=self._revoke_deadline + 5)
        handler.commit_revoked(points or {}, lambda offsets: commit_offsets(consumer, offsets))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.generation += 1
        self._run_on_loop(self._subscribed().lost(tps), timeout=30)

    def _subscribed(self) -> RebalanceHandler:
        if self._handler is None:
            raise RuntimeError("rebalance callback before subscribe()")
        return self._handler

    def _run_on_loop(self, coro: Coroutine[Any, Any, T], timeout: float) -> T | None:
        if self._loop is None:
            return None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            future.cancel()
            log.error("rebalance handling exceeded %.0fs; continuing without it", timeout)
            return None
