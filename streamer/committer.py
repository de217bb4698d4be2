"""Committing the offset watermark: what moved is committed, and only what the broker stored
is recorded as done.

The tracker (offsets.py) decides which offsets may be committed; this module sends them and
reads the answer partition by partition. A refused partition is counted, logged and left
unrecorded, so the next interval commits it again; the partitions the broker stored move on.
"""

from __future__ import annotations

import logging
import time

from streamer.metrics import Metrics
from streamer.offsets import OffsetTracker, TopicPartition
from streamer.source import KafkaSource

log = logging.getLogger(__name__)


class Committer:
    def __init__(self, source: KafkaSource, tracker: OffsetTracker, metrics: Metrics) -> None:
        self._source = source
        self._tracker = tracker
        self._metrics = metrics
        self._failing: dict[TopicPartition, str] = {}  # partition -> last refusal reason

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
