"""Which offsets may be committed: per partition, the lowest offset not yet acknowledged.

Events are tracked per consumed batch, not per message: each (batch, partition) becomes a
PendingRange holding a count of unacknowledged events. Buffers and the DLQ writer acknowledge by
count. A partition's watermark is the first offset of its oldest unfinished range, or last
consumed + 1 when none is pending. Revoking a partition forgets its ranges, so a late
acknowledgement from an earlier assignment changes an orphan object and is never committed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

# PendingRange(tp, first, last, pending): events of one partition from one consumed batch,
# done when `pending` reaches zero (`ack(count)`); `count` is how many were consumed in it. It
# is native (streamer/fastpath/src/range.rs) because the native buffers hold and settle ranges.
from streamer._fastpath import PendingRange

TopicPartition = tuple[str, int]

__all__ = ["OffsetTracker", "PartitionOffsets", "PendingRange", "TopicPartition"]


class PartitionOffsets:
    """One assigned partition: its ranges in offset order and what was last committed."""

    __slots__ = ("committed", "next_offset", "ranges")

    def __init__(self) -> None:
        self.ranges: deque[PendingRange] = deque()
        self.next_offset: int | None = None  # last consumed + 1
        self.committed: int | None = None

    def add(self, tp: TopicPartition, first: int, last: int, count: int) -> PendingRange:
        rng = PendingRange(tp, first, last, count)
        self.ranges.append(rng)
        self.next_offset = last + 1
        return rng

    def watermark(self) -> int | None:
        ranges = self.ranges
        while ranges and ranges[0].pending <= 0:
            ranges.popleft()
        return ranges[0].first if ranges else self.next_offset

    @property
    def pending_events(self) -> int:
        return sum(r.pending for r in self.ranges)


class OffsetTracker:
    """All assigned partitions of this process; the only place commit offsets are decided."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions[tp] = PartitionOffsets()

    def forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop(tp, None)

    def assigned(self) -> list[TopicPartition]:
        return list(self._partitions)

    def track(self, tp: TopicPartition, first: int, last: int, count: int) -> PendingRange:
        """Record `count` consumed events of one partition; unassigned partitions get orphans."""
        part = self._partitions.get(tp)
        if part is None:  # consumed during a revoke: its acks must never be committed
            return PendingRange(tp, first, last, count)
        return part.add(tp, first, last, count)

    def seed(self, starts: dict[TopicPartition, int]) -> None:
        """Where consumption of partitions nothing was consumed from yet starts (asked of the
        broker), so how far behind they are is known before their first message."""
        for tp, offset in starts.items():
            part = self._partitions.get(tp)
            if part is not None and part.next_offset is None:
                part.next_offset = offset

    def consumed(self, ranges: Iterable[PendingRange]) -> None:
        """After a batch: each partition's next offset is one past its last consumed message."""
        for rng in ranges:
            part = self._partitions.get(rng.tp)
            if part is not None:
                part.next_offset = rng.last + 1

    def commit_points(self, only: list[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Watermarks that moved past the last commit (offset = next message to read)."""
        points: dict[TopicPartition, int] = {}
        for tp in only if only is not None else list(self._partitions):
            part = self._partitions.get(tp)
            if part is None:
                continue
            mark = part.watermark()
            if mark is not None and (part.committed is None or mark > part.committed):
                points[tp] = mark
        return points

    def mark_committed(self, points: dict[TopicPartition, int]) -> None:
        for tp, offset in points.items():
            part = self._partitions.get(tp)
            if part is not None:
                part.committed = offset

    def pending_events(self) -> int:
        return sum(p.pending_events for p in self._partitions.values())

    def pending_in(self, partitions: Iterable[TopicPartition]) -> int:
        """Events of these partitions not settled yet (held in memory, in flight or the DLQ)."""
        return sum(p.pending_events for tp in partitions if (p := self._partitions.get(tp)))

    def positions(self) -> dict[TopicPartition, int]:
        """Per partition, the next offset to consume (last consumed + 1), where known."""
        parts = self._partitions.items()
        return {tp: p.next_offset for tp, p in parts if p.next_offset is not None}

    def committed_offsets(self) -> dict[TopicPartition, int]:
        """What this process last committed per partition (consumer lag is measured from it)."""
        return {tp: p.committed for tp, p in self._partitions.items() if p.committed is not None}
