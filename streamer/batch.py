"""Per-cohort coalescing buffers: the latest action per uid wins, in partition order.

A cohort has one open buffer that takes events, and at most one sealed buffer being sent.
Sealing hands the whole open buffer to the sender and starts a fresh one, so an event that
arrives while a request is in flight never changes a request already built. Every event put
into a buffer (superseded or not) is acknowledged when the sealed buffer is acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from streamer.offsets import PendingRange, TopicPartition

# bytes one member adds to a body beyond its uid: {"uid":""} plus the separating comma
MEMBER_OVERHEAD = 11


class SourceMessage(Protocol):
    """What the pipeline needs of a confluent_kafka.Message (plain objects in unit tests)."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def timestamp(self) -> tuple[int, int]: ...


# uid -> (add, message that won, event ts in epoch ms or None)
Entry = tuple[bool, SourceMessage, int | None]


class CohortBuffer:
    """The coalesced changes of one cohort since its last seal."""

    __slots__ = (
        "cohort_id",
        "description",
        "entries",
        "est_body_bytes",
        "events",
        "name",
        "nbytes",
        "opened_at",
        "ranges",
    )

    def __init__(self, cohort_id: str, opened_at: float) -> None:
        self.cohort_id = cohort_id
        self.name = cohort_id
        self.description: str | None = None
        self.entries: dict[str, Entry] = {}
        self.ranges: dict[PendingRange, int] = {}
        self.events = 0
        self.nbytes = 0
        self.est_body_bytes = 0
        self.opened_at = opened_at  # monotonic time of the first event: linger counts from it

    def put(self, uid: str, entry: Entry, rng: PendingRange, size: int) -> bool:
        """Add one event; True when it superseded an earlier event of the same uid."""
        entries = self.entries
        held = len(entries)
        entries[uid] = entry  # one dict operation per event: the length tells if uid was new
        ranges = self.ranges
        ranges[rng] = ranges.get(rng, 0) + 1
        self.events += 1
        self.nbytes += size
        if len(entries) == held:
            return True
        self.est_body_bytes += len(uid) + MEMBER_OVERHEAD
        return False

    def acknowledge(self) -> None:
        """Every event that went into this buffer is now safe to commit past."""
        for rng, count in self.ranges.items():
            rng.ack(count)

    def partitions(self) -> set[TopicPartition]:
        return {rng.tp for rng in self.ranges}

    def drop_partitions(self, lost: set[TopicPartition]) -> int:
        """Forget events of lost partitions (they are redelivered to the new owner)."""
        kept = {
            uid: entry
            for uid, entry in self.entries.items()
            if (entry[1].topic(), entry[1].partition()) not in lost
        }
        dropped = len(self.entries) - len(kept)
        self.entries = kept
        lost_events = sum(c for r, c in self.ranges.items() if r.tp in lost)
        self.ranges = {r: c for r, c in self.ranges.items() if r.tp not in lost}
        self.events -= lost_events
        # superseded events leave no trace of their size; count what is still held
        self.nbytes = sum(len(entry[1].value() or b"") for entry in kept.values())
        return dropped

    def split_actions(self) -> tuple[list[str], list[str]]:
        adds: list[str] = []
        removes: list[str] = []
        for uid, (add, _msg, _ts) in self.entries.items():
            (adds if add else removes).append(uid)
        return adds, removes


class Cohort:
    """A cohort's open buffer and whether a sealed buffer of it is being sent."""

    __slots__ = ("busy", "cohort_id", "open")

    def __init__(self, cohort_id: str) -> None:
        self.cohort_id = cohort_id
        self.open: CohortBuffer | None = None
        self.busy = False  # a sealed buffer is in flight: never two requests for one cohort


def is_due(cohort: Cohort, now: float, linger_s: float, full_bytes: int) -> bool:
    """Due when its oldest event has lingered long enough or it can already fill a request."""
    buf = cohort.open
    if buf is None or cohort.busy:
        return False
    return now - buf.opened_at >= linger_s or buf.est_body_bytes >= full_bytes


def pick_due(
    cohorts: Iterable[Cohort], now: float, linger_s: float, full_bytes: int
) -> Cohort | None:
    """The due cohort whose oldest event has waited longest: oldest-first, so none starves."""
    best: Cohort | None = None
    best_at = float("inf")
    for cohort in cohorts:
        buf = cohort.open
        due = buf is not None and is_due(cohort, now, linger_s, full_bytes)
        if due and buf is not None and buf.opened_at < best_at:
            best, best_at = cohort, buf.opened_at
    return best


def next_due_at(cohorts: Iterable[Cohort], linger_s: float) -> float | None:
    """When the next idle cohort becomes due by linger (the dispatcher sleeps until then)."""
    times = [c.open.opened_at + linger_s for c in cohorts if c.open is not None and not c.busy]
    return min(times) if times else None
