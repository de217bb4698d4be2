"""Committing the offset watermark: the one place that decides when offsets are committed.

Three moments: every commit interval (tick()), before revoked partitions are released (the
source's rebalance callbacks come here, and the pipeline flushes first), and once at shutdown
after the drain (commit()). The tracker (offsets.py) decides which offsets may be committed;
this module sends them and reads the answer partition by partition. A refused partition is
counted, logged and left unrecorded, so the next interval commits it again; the partitions the
broker stored move on. A revoked partition refused is redelivered to its next owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from streamer.metrics import Metrics
from streamer.offsets import OffsetTracker, TopicPartition
from streamer.source import CommitNow, KafkaSource

log = logging.getLogger(__name__)


class Flusher(Protocol):
    """The pipeline's side of an assignment change (Pipeline); runs on the event loop."""

    async def assigned(self, partitions: list[TopicPartition]) -> None: ...

    async def revoking(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Flush what these partitions hold; returns their watermarks, then forgets them."""
        ...

    async def lost(self, partitions: list[TopicPartition]) -> None: ...


class Committer:
    """The source's rebalance handler (source.RebalanceHandler) and the interval's committer."""

    def __init__(
        self,
        source: KafkaSource,
        flusher: Flusher,
        tracker: OffsetTracker,
        metrics: Metrics,
        interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._flusher = flusher
        self._tracker = tracker
        self._metrics = metrics
        self._interval = interval_seconds
        self._clock = clock
        self._next_commit = clock() + interval_seconds
        self._failing: dict[TopicPartition, str] = {}  # partition -> last refusal reason

    async def tick(self) -> None:
        """Commit once the interval has passed since the last interval commit."""
        now = self._clock()
        if now >= self._next_commit:
            self._next_commit = now + self._interval
            await self.commit()

    async def commit(self) -> None:
        """Commit every watermark that moved; a refused partition is retried next time."""
        generation = self._source.generation
        points = self._tracker.commit_points()
        if not points:
            return
        result = await self._source.commit(points, generation)
        if result is None:
            return  # a rebalance came between: recompute next time
        if result.done:
            self._tracker.mark_committed(result.done)
            self._metrics.commits.inc()
            self._metrics.last_commit_timestamp.set(time.time())
        self._report(result.done, result.failed)

    def _report(self, stored: dict[TopicPartition, int], failed: dict[TopicPartition, str]) -> None:
        """Count every refusal; log a partition when it starts failing or its reason changes
        (a broker refusing for minutes would otherwise log every interval), and when it heals."""
        if failed:
            self._metrics.commit_failures.inc(len(failed))
        for tp, reason in sorted(failed.items()):
            if self._failing.get(tp) != reason:
                log.warning(
                    "commit of %s[%d] refused (retried every interval): %s",
                    tp[0], tp[1], reason,
                    extra={"topic": tp[0], "partition": tp[1], "reason": reason},
                )  # fmt: skip
        for tp in sorted(self._failing.keys() & stored.keys()):
            log.info("commit of %s[%d] succeeds again", tp[0], tp[1])
            del self._failing[tp]
        self._failing.update(failed)

    # --- assignment changes (source.RebalanceHandler) ---

    async def assigned(self, partitions: list[TopicPartition]) -> None:
        await self._flusher.assigned(partitions)

    async def revoking(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._flusher.revoking(partitions)

    def commit_revoked(self, points: dict[TopicPartition, int], commit: CommitNow) -> None:
        """Commit what the revoked partitions applied, before they go (on the consumer thread:
        the tracker has forgotten them, so only the log reports the outcome)."""
        if not points:
            return
        result = commit(points)
        if result.done:
            log.info("committed %d revoked partition(s) before release", len(result.done))
        for (t, p), reason in sorted(result.failed.items()):
            log.warning("commit of revoked %s[%d] failed (redelivered): %s", t, p, reason)

    async def lost(self, partitions: list[TopicPartition]) -> None:
        await self._flusher.lost(partitions)
