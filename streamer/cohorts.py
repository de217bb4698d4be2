"""The cohorts with work: an open buffer, or a delivery in flight. Idle ones are forgotten.

The one owner of a cohort's lifecycle: it opens and closes buffers and marks deliveries started
and done, so the pipeline's cost follows the cohorts with work, never every cohort ever seen.

Dispatch looks at a few cohorts per pick, not at all of them: buffers are opened at the
pipeline's monotonic clock, so cohorts kept in buffer-opening order are sorted by `opened_at`
(the oldest-first rule). The cohorts due by time are then a prefix of that order; the forced
ones and those holding a full body are kept in the same order apart. The oldest due cohort is
the first idle one of one of these three (a delivery in flight is skipped: at most
max_in_flight of them), and batch.pick_due chooses among those few by the very rule it applies
to any set of cohorts.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from streamer.batch import Cohort, CohortBuffer, Pick, Timing, pick_due, pick_largest
from streamer.offsets import TopicPartition

# Python's dicts never shrink when entries are deleted: a burst of 50,000 cohorts would leave
# its tables (several MB) in place for good. Once the cohorts tracked fall to a quarter of their
# high point, the tables are rebuilt to fit (amortised O(1) per forgotten cohort); small ones
# are left alone.
SHRINK_FACTOR = 4
SHRINK_ABOVE = 1024

# cohort -> when its buffer was opened, as a sequence number (ties of opened_at keep this order)
Order = OrderedDict[Cohort, int]


class ActiveCohorts:
    def __init__(self, full_bytes: int) -> None:
        self.by_id: dict[str, Cohort] = {}
        # the open buffers by cohort id: what the native ingest loop (FastPath.ingest_run) puts
        # events into; kept in step with Cohort.open here, where buffers open and close
        self.open_buffers: dict[str, CohortBuffer] = {}
        self._open: Order = OrderedDict()  # every cohort with an open buffer
        self._forced: Order = OrderedDict()  # those of them a revoke or shutdown forces out
        self._full: Order = OrderedDict()  # those of them holding a full body
        self._full_stale = False  # events were ingested: _full is found again when needed
        self._opened = 0
        self._full_bytes = full_bytes
        self._high = 0  # most cohorts tracked since the tables were last rebuilt

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, cohort_id: str) -> Cohort | None:
        return self.by_id.get(cohort_id)

    @property
    def buffered(self) -> int:
        """Cohorts with an open buffer."""
        return len(self._open)

    def streams(self) -> int:
        """(cohort, action) pairs with buffered changes: O(buffered), for the budget gauges
        every few seconds, never per event or per pick."""
        return sum(
            (buf.add_bytes > 0) + (buf.remove_bytes > 0) for buf in self.open_buffers.values()
        )

    def buffers(self) -> list[Cohort]:
        """The cohorts with an open buffer, oldest first (a copy: the caller may close some)."""
        return list(self._open)

    # --- lifecycle ---

    def buffer(self, cohort_id: str, now: float) -> CohortBuffer:
        """The cohort's open buffer; opened at `now` (the monotonic clock) if it has none."""
        cohort = self.by_id.get(cohort_id)
        if cohort is None:
            cohort = self.by_id[cohort_id] = Cohort(cohort_id)
            self._high = max(self._high, len(self.by_id))
        if cohort.open is None:
            cohort.open = self.open_buffers[cohort_id] = CohortBuffer(cohort_id, now)
            self._open[cohort] = self._opened
            self._opened += 1
        return cohort.open

    def ingested(self) -> None:
        """Events went into open buffers (the native loop says not which): any may be full."""
        self._full_stale = True

    def taken(self, cohort: Cohort, in_flight: bool) -> None:
        """A delivery sealed part or all of the cohort's buffer; `in_flight`: it is being sent."""
        cohort.busy = in_flight
        self.changed(cohort)

    def delivered(self, cohort: Cohort) -> None:
        cohort.busy = False
        self.changed(cohort)

    def changed(self, cohort: Cohort) -> None:
        """The cohort's buffer changed outside ingest (sealed, requeued to, partitions dropped):
        an empty one closes, an idle cohort is forgotten, the full-body index follows."""
        buf = cohort.open
        if buf is not None and not len(buf):
            buf = cohort.open = None
            del self.open_buffers[cohort.cohort_id]
        if buf is None:
            cohort.forced = False  # forcing applies to the buffer it found
            for order in (self._open, self._forced, self._full):
                order.pop(cohort, None)
            if not cohort.busy and self.by_id.get(cohort.cohort_id) is cohort:
                del self.by_id[cohort.cohort_id]
                self._shrink_after_burst()
        elif not buf.has_full_body(self._full_bytes):
            self._full.pop(cohort, None)
        elif cohort not in self._full:
            self._full_stale = True  # found again in order, when next needed

    def _shrink_after_burst(self) -> None:
        tracked = len(self.by_id)
        if self._high <= SHRINK_ABOVE or tracked * SHRINK_FACTOR > self._high:
            return
        for table in (self.by_id, self.open_buffers, self._open, self._forced, self._full):
            _rebuild(table)
        self._high = tracked

    def force(self, partitions: set[TopicPartition] | None) -> None:
        """Every buffer (or each holding events of `partitions`) is due now, whatever it waited."""
        for cohort in self._open:
            buf = cohort.open
            if buf is not None and (partitions is None or buf.holds_any(partitions)):
                cohort.forced = True
        self._forced = OrderedDict((c, n) for c, n in self._open.items() if c.forced)

    # --- dispatch ---

    def pick(self, now: float, timing: Timing, scarce: bool) -> Pick | None:
        """The due cohort that has waited longest (batch.pick_due), and how much of it."""
        candidates: dict[Cohort, int] = {}
        for order in (self._open, self._forced, self._full_cohorts()):
            first = _first_idle(order)
            if first is not None:
                candidates[first] = order[first]
        oldest_first = sorted(candidates, key=candidates.__getitem__)
        return pick_due(oldest_first, now, timing, self._full_bytes, scarce)

    def largest(self) -> Pick | None:
        """Under memory pressure: batch.pick_largest over the open buffers (O(buffered), only
        while above the high-water mark with no full body anywhere)."""
        return pick_largest(self._open)

    def any_full(self) -> bool:
        """Some buffer holds a full body (in flight or not)."""
        return bool(self._full_cohorts())

    def next_due_at(self, now: float, wait: float) -> float | None:
        """When the oldest idle buffer will have waited `wait` seconds, if that is still ahead
        (if it is past, that cohort waits for capacity, not for time)."""
        first = _first_idle(self._open)
        if first is None or first.open is None:
            return None
        at = first.open.opened_at + wait
        return at if at > now else None

    def _full_cohorts(self) -> Order:
        """The cohorts holding a full body, in buffer-opening order; after an ingest, found
        again: O(buffered) once per consumed batch, and only when a pick or stall check asks."""
        if self._full_stale:
            self._full_stale = False
            full = self._full_bytes
            self._full = OrderedDict(
                (c, n)
                for c, n in self._open.items()
                if c.open is not None and c.open.has_full_body(full)
            )
        return self._full


def _rebuild(table: dict[Any, Any]) -> None:
    """Re-create a dict's table at the size of its entries, in place (the native ingest loop
    holds by_id) and in order."""
    entries = list(table.items())
    table.clear()  # frees the large table
    table.update(entries)


def _first_idle(order: Order) -> Cohort | None:
    """The first cohort of `order` with no delivery in flight."""
    return next((cohort for cohort in order if not cohort.busy), None)
