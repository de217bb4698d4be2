"""Whether a backlog waits in Kafka, so the API budget, not the input, is the limit.

While it does, a cohort sends only full bodies (batch.py). The answer must be right from the
first fetch: a streamer that counts itself caught up while it does not yet know how much waits
lets every cohort's first linger expire, and pays one partial request per cohort and action
out of the scarce budget. So a partition whose high watermark or position is not known yet
counts as behind, and the position of a partition nothing was consumed from is asked of the
broker once (its committed offset, or where auto.offset.reset starts it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from streamer.offsets import OffsetTracker, TopicPartition
from streamer.source import KafkaSource

# a partition whose start position the broker did not give is asked again after this long
ASK_AGAIN_SECONDS = 5.0
# the broker round trips of one ask (they run on the consumer thread, between consume calls)
ASK_TIMEOUT_SECONDS = 2.0


class BacklogWatch:
    def __init__(
        self,
        source: KafkaSource,
        tracker: OffsetTracker,
        batch_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._tracker = tracker
        self._batch = batch_size
        self._clock = clock
        self._asked: dict[TopicPartition, float] = {}  # partition -> when it may be asked again

    async def behind(self, consumed: int) -> bool:
        """More than one consume batch waits in Kafka (or how much waits is not known yet).

        `consumed`: how many messages the last consume call returned (a full batch means more
        waits). High watermarks come from librdkafka's cache (no round trip).
        """
        if consumed >= self._batch:
            return True
        assigned = self._tracker.assigned()
        if not assigned:
            return False
        await self._learn_start_positions(assigned)
        positions = self._tracker.positions()
        marks = await self._source.high_watermarks(assigned)
        if any(tp not in marks or tp not in positions for tp in assigned):
            return True  # not known yet: a catch-up must not start with partial requests
        waiting = sum(max(0, marks[tp] - positions[tp]) for tp in assigned)
        return waiting >= self._batch

    async def _learn_start_positions(self, assigned: list[TopicPartition]) -> None:
        now = self._clock()
        positions = self._tracker.positions()
        ask = [tp for tp in assigned if tp not in positions and self._asked.get(tp, 0.0) <= now]
        if not ask:
            return
        for tp in ask:
            self._asked[tp] = now + ASK_AGAIN_SECONDS
        starts = await self._source.start_positions(ask, ASK_TIMEOUT_SECONDS)
        self._tracker.seed(starts)
        if len(self._asked) > 4 * len(assigned):  # forget partitions long revoked
            current = set(assigned)
            self._asked = {tp: at for tp, at in self._asked.items() if tp in current}
