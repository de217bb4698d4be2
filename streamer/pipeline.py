"""The pipeline's state machine: consumed messages in, coalesced deliveries out, offsets released.

ingest() is the per-event hot path (decode, route to the cohort's buffer); dispatch seals due
cohorts oldest-first while the rate limiter has room. While a backlog waits in Kafka only full
bodies are sent, so the scarce API budget carries full requests; the RebalanceHandler methods
keep the commit rules of the README's Guarantees on assignment changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable

from streamer._fastpath import Members, event_time
from streamer.backpressure import above_high_water
from streamer.batch import Cohort, Entry, Pick, SourceMessage, Take, Timing
from streamer.cohorts import ActiveCohorts
from streamer.config import Settings
from streamer.decode import Decoder, Rejection
from streamer.dlq import DeadLetterWriter, origin_of
from streamer.metrics import Metrics
from streamer.offsets import OffsetTracker, PendingRange, TopicPartition
from streamer.ratelimit import RateLimiter
from streamer.seal import Shipment, seal
from streamer.send import Sender

log = logging.getLogger(__name__)

IDLE_TICK_SECONDS = 0.05


class Mode(enum.Enum):
    """What the dispatcher sends and what a revoke waits for. Running flips between the first
    two as the consume loop sees a backlog come and go; shutdown moves on to the last two."""

    LIVE = "live"  # caught up: a cohort goes once its oldest event has lingered
    CATCHING_UP = "catching_up"  # a backlog waits in Kafka: only full bodies (budget is scarce)
    FLUSHING = "flushing"  # shutting down: every buffer is due now
    STOPPED = "stopped"  # the shutdown drain ran: a revoke only drops and commits, never waits


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        sender: Sender,
        limiter: RateLimiter,
        dlq: DeadLetterWriter,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.tracker = OffsetTracker()
        self.cohorts = ActiveCohorts(settings.moengage.max_payload_bytes)
        self.sending: dict[Shipment, tuple[Cohort, asyncio.Task[None]]] = {}
        self.buffered_events = 0
        self.buffered_bytes = 0
        self.mode = Mode.LIVE
        self._decoder = Decoder(settings.events, settings.batching.max_event_bytes)
        self._sender = sender
        self._limiter = limiter
        self._dlq = dlq
        self._metrics = metrics
        self._clock = clock
        b = settings.batching
        self._timing = Timing(linger=b.linger_ms / 1000, max_hold=b.max_hold_ms / 1000)
        self._full_bytes = settings.moengage.max_payload_bytes
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- modes ---

    def track_backlog(self, behind: bool) -> None:
        """The consume loop's finding: whether a backlog waits in Kafka. Ignored once shutting
        down (then everything is due anyway)."""
        if self.mode in (Mode.LIVE, Mode.CATCHING_UP):
            self.mode = Mode.CATCHING_UP if behind else Mode.LIVE

    @property
    def catching_up(self) -> bool:
        return self.mode is Mode.CATCHING_UP

    def start_flush(self) -> None:
        """Shutdown: from now on every buffer is due (nothing new is consumed)."""
        self.mode = Mode.FLUSHING

    # --- ingest: the per-event path ---

    def ingest(self, messages: list[SourceMessage]) -> None:
        """Decode a consumed batch into the cohort buffers.

        The common case runs in native code (FastPath.ingest_run: decode and coalesce) for as
        long as messages continue one partition's run, are valid events and their cohort has an
        open buffer. The message that stops it is taken here the careful way, then the native
        loop goes on. Offsets are tracked per run of one partition (librdkafka hands over whole
        fetch responses, so runs are long): one PendingRange per run, not per message.
        """
        ingest_run = self._decoder.fast_path.ingest_run
        one_topic = len(self.settings.kafka.topics) == 1  # runs end where partitions change
        buffers = self.cohorts.open_buffers
        now = self._clock()
        runs: list[PendingRange] = []
        rng = _NO_RUN
        coalesced = nbytes = released_bytes = 0
        index, count = 0, len(messages)
        while index < count:
            msg = messages[index]
            topic, partition = msg.topic(), msg.partition()
            if partition != rng.tp[1] or topic != rng.tp[0]:
                offset = msg.offset()
                rng = self.tracker.track((topic, partition), offset, offset, 0)
                runs.append(rng)
            size, old = self._take(msg, rng, now)
            nbytes += size
            if old is not None:  # settled by put(): its winner is held (see streamer/batch.py)
                coalesced += 1
                released_bytes += old.size
            start = index + 1
            run_topic = None if one_topic else topic
            tally = ingest_run(messages, start, run_topic, partition, rng, buffers)
            index = tally.next
            if index > start:
                rng.count += index - start
                rng.pending += index - start
                rng.last = tally.last_offset
                nbytes += tally.value_bytes
                coalesced += tally.superseded
                released_bytes += tally.superseded_bytes
        self.cohorts.ingested()
        self.tracker.consumed(runs)
        for run in runs:
            self._metrics.events_consumed.labels(run.tp[0]).inc(run.count)
        self.buffered_events += count - coalesced
        self.buffered_bytes += nbytes - released_bytes
        self._metrics.events_coalesced.inc(coalesced)
        self._wake.set()  # a cohort may have filled a body

    def _take(self, msg: SourceMessage, rng: PendingRange, now: float) -> tuple[int, Entry | None]:
        """One message the careful way (a run's first, a new cohort's, one the native path is
        not sure of): its value's size, and the entry it superseded."""
        offset = msg.offset()
        rng.count += 1
        rng.pending += 1
        rng.last = offset
        value = msg.value() or b""  # a tombstone (None) is refused like an empty value
        size = len(value)
        change = self._decoder.decode(value)
        if isinstance(change, Rejection):
            self._dead_letter(msg, change, rng, size)
            return size, None
        buf = self.cohorts.buffer(change.cohort_id, now)
        buf.name = change.cohort_name
        if change.cohort_description is not None:
            buf.description = change.cohort_description
        entry = Entry(
            add=change.add,
            value=value,
            key=msg.key(),
            offset=offset,
            ts_ms=event_time(msg, change.ts_ms),
            range=rng,
        )
        return size, buf.put(change.uid, entry)

    def _dead_letter(
        self, msg: SourceMessage, rejection: Rejection, rng: PendingRange, size: int
    ) -> None:
        log.warning(
            "invalid event %s[%d]@%d: %s (%s)",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            rejection.reason,
            rejection.detail,
            extra={
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "reason": rejection.reason,
            },
        )
        self._metrics.invalid_events.labels(rejection.reason).inc()

        def written() -> None:
            rng.ack()
            self.buffered_events -= 1
            self.buffered_bytes -= size

        self._dlq.write(origin_of(msg), rejection.reason, rejection.detail, written)

    # --- dispatch: seal due cohorts while there is budget ---

    async def dispatch_forever(self) -> None:
        max_in_flight = self.settings.moengage.max_in_flight
        while True:
            now = self._clock()
            pick = None
            if len(self.sending) < max_in_flight and self._limiter.has_capacity():
                pick = self._pick(now)
            if pick is not None:
                self._start_delivery(pick)
                # let the delivery take its token before the next pick: the limiter counts
                # only tokens taken, so without this one token would seal every due cohort
                # at once, and all of them would then wait in the limiter's queue, sealed,
                # instead of coalescing until a token is there for them
                await asyncio.sleep(0)
                continue
            await self._sleep_until_next_due(now)

    @property
    def over_high_water(self) -> bool:
        """Memory, not the API, is the limit: consumption pauses (and may force partial bodies)."""
        return above_high_water(self.buffered_events, self.buffered_bytes, self.settings.batching)

    def stalled(self) -> bool:
        """Nothing in flight and no full body anywhere: memory held now is only remainders."""
        return not self.sending and not self.cohorts.any_full()

    def _pick(self, now: float) -> Pick | None:
        if self.mode in (Mode.FLUSHING, Mode.STOPPED):
            return self.cohorts.pick(now, _AT_ONCE, scarce=False)
        pick = self.cohorts.pick(now, self._timing, scarce=self.catching_up)
        if pick is None and self.over_high_water and self.stalled():
            # above the high-water mark with only remainders held: waiting cannot fill a body,
            # so the fullest remainder goes (just enough to get under it and consume again)
            pick = self.cohorts.largest()
        return pick

    async def _sleep_until_next_due(self, now: float) -> None:
        flushing = self.mode in (Mode.FLUSHING, Mode.STOPPED)
        wait = 0.0 if flushing else self._timing.wait(self.catching_up)
        due_at = self.cohorts.next_due_at(now, wait)
        timeout = IDLE_TICK_SECONDS if due_at is None else max(0.001, due_at - now)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), min(timeout, IDLE_TICK_SECONDS))

    def _start_delivery(self, pick: Pick) -> None:
        cohort = pick.cohort
        buf = cohort.open
        if buf is None:
            return
        shipment = seal(buf, self.settings.moengage.partner, self._full_bytes, pick.take)
        if pick.take is Take.LARGER_ACTION:
            self._metrics.memory_flushes.inc(len(shipment.parcels))
        in_flight = bool(shipment.parcels or shipment.too_large)
        self.cohorts.taken(cohort, in_flight)
        if not in_flight:
            return
        task = asyncio.create_task(
            self._deliver(cohort, shipment), name=f"deliver-{cohort.cohort_id}"
        )
        self.sending[shipment] = (cohort, task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, cohort: Cohort, shipment: Shipment) -> None:
        try:
            while True:
                try:
                    await self._sender.deliver(shipment, self._settle)
                    break
                except asyncio.CancelledError:
                    log.info(
                        "delivery of %s cancelled; it will be redelivered",
                        cohort.cohort_id,
                        extra={"cohort_id": cohort.cohort_id},
                    )
                    raise
                except Exception:
                    # a bug, not an API answer: the sender retries those itself. Unsettled
                    # parcels stay unacknowledged (nothing is committed past them) and are sent
                    # again; add and remove are idempotent.
                    log.exception(
                        "delivery of cohort %s failed; retrying",
                        cohort.cohort_id,
                        extra={"cohort_id": cohort.cohort_id},
                    )
                    await asyncio.sleep(1)
        finally:
            self.sending.pop(shipment, None)
            self.cohorts.delivered(cohort)
            self._wake.set()

    def _settle(self, members: Members) -> None:
        """These winning events are applied (or dead-lettered): their offsets may be committed.

        One pass in Rust: a body holds thousands of events, from few ranges."""
        self._forget(*members.settle())

    def _forget(self, events: int, nbytes: int) -> None:
        """Events no longer held in memory."""
        self.buffered_events -= events
        self.buffered_bytes -= nbytes

    # --- draining: shutdown and revoke ---

    def holds(self, partitions: set[TopicPartition]) -> bool:
        """True while events of these partitions are held: buffered, in flight or in the DLQ."""
        return self.tracker.pending_in(partitions) > 0

    async def drain(self, partitions: set[TopicPartition] | None, deadline: float) -> bool:
        """Flush (all, or what holds `partitions`) until nothing is held or the deadline.

        Nothing new is consumed meanwhile (a revoke runs inside consume(); a shutdown has
        stopped consuming), so the cohorts to flush are found once.
        """
        self.cohorts.force(partitions)
        while self._clock() < deadline:
            if partitions is None:
                if not self.sending and not self.cohorts.buffered:
                    return True
            elif not self.holds(partitions):
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    async def _abandon(self, partitions: set[TopicPartition]) -> None:
        """Stop deliveries holding events of partitions about to be released.

        Their new owner sends those events again; a request of ours still retrying could land
        after the new owner's, and undo a later change. The other events of a stopped delivery
        go back to their cohort's buffer (unsettled, so nothing is committed past them).
        """
        stopped = [
            (shipment, cohort, task)
            for shipment, (cohort, task) in self.sending.items()
            if shipment.holds_any(partitions)
        ]
        for _shipment, _cohort, task in stopped:
            task.cancel()
        await asyncio.gather(*(task for *_, task in stopped), return_exceptions=True)
        for shipment, _cohort, _task in stopped:
            self._requeue(shipment, partitions)

    def _requeue(self, shipment: Shipment, released: set[TopicPartition]) -> None:
        """Events of released partitions are dropped (redelivered to the new owner); one whose
        uid the buffer holds again is settled (the later event wins); the rest is held again."""
        cohort = self.cohorts.get(shipment.cohort_id)
        held = cohort.open if cohort is not None else None
        buf = self.cohorts.buffer(shipment.cohort_id, self._clock())
        if held is None:  # a new buffer: the labels its events were sealed with
            buf.name, buf.description = shipment.name, shipment.description
        for members in shipment.unsettled():
            own, other = (buf.adds, buf.removes) if members.add else (buf.removes, buf.adds)
            self._forget(*members.requeue(own, other, released))
        self.cohorts.changed(self.cohorts.by_id[shipment.cohort_id])

    def drop(self, partitions: set[TopicPartition]) -> None:
        """Forget buffered events of partitions we no longer own (redelivered to the new owner)."""
        for cohort in self.cohorts.buffers():
            if cohort.open is not None:
                self._forget(*cohort.open.drop_partitions(partitions))
            self.cohorts.changed(cohort)

    # --- RebalanceHandler ---

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", _show(partitions))
        self._metrics.rebalances.labels("assign").inc()
        self.tracker.assign(partitions)

    async def revoking(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        log.info("revoking %s: flushing their buffered changes", _show(partitions))
        self._metrics.rebalances.labels("revoke").inc()
        revoked = set(partitions)
        deadline = self._clock() + self.settings.deadlines.revoke_flush_seconds
        if self.mode is Mode.STOPPED:  # the shutdown drain ran (and warned if it fell short)
            self.drop(revoked)
        elif not await self.drain(revoked, deadline):
            log.warning("revoke deadline passed; uncommitted changes will be redelivered")
            await self._abandon(revoked)
            self.drop(revoked)
        points = self.tracker.commit_points(partitions)
        self.tracker.forget(partitions)
        return points

    async def lost(self, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s: dropping their buffered changes without commit", _show(partitions))
        self._metrics.rebalances.labels("lost").inc()
        self.drop(set(partitions))
        self.tracker.forget(partitions)

    async def stop(self) -> None:
        """After the shutdown drain: stop every delivery; a later revoke only drops."""
        self.mode = Mode.STOPPED
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_AT_ONCE = Timing(linger=0.0, max_hold=0.0)  # shutdown: every buffer is due now

# the "previous run" before a batch's first message: no message belongs to it
_NO_RUN = PendingRange(("", -1), 0, 0, 0)


def _show(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)) or "nothing"
