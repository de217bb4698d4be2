"""Per-cohort coalescing buffers and the policy that decides which cohort is sent next.

A cohort has one open buffer: the latest action per uid wins. A superseded event is settled at
once (its offset may be committed): its winner is still held, so a crash redelivers the winner,
and the state it leaves is the state the superseded event would have been overwritten to.

While the API budget is the limit (a backlog waits in Kafka), a cohort sends only full bodies
and keeps its remainder to fill later; once caught up, a cohort whose oldest event has lingered
sends everything. Due cohorts are served oldest-first, so none starves.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from streamer._fastpath import CohortBuffer, Entry

# CohortBuffer (streamer/fastpath/src/buffer.rs): one cohort's coalesced changes not being sent
# yet; per action the latest event per uid (`adds`, `removes`: Held), its `name` and
# `description`, `opened_at`. Its events are Rust data, not Python objects; Entry is one of
# them as Python sees it (add, value, key, offset, ts_ms, range, size). The buffer's storage is
# native because the ingest loop is; the policy (when a cohort is due, how much goes) is here.
__all__ = ["Cohort", "CohortBuffer", "Entry", "Pick", "SourceMessage", "Take", "Timing"]


class SourceMessage(Protocol):
    """What the pipeline needs of a confluent_kafka.Message (plain objects in unit tests)."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def timestamp(self) -> tuple[int, int]: ...


class Cohort:
    """A cohort's open buffer, whether a delivery of it is in flight, and if it must flush."""

    __slots__ = ("busy", "cohort_id", "forced", "open")

    def __init__(self, cohort_id: str) -> None:
        self.cohort_id = cohort_id
        self.open: CohortBuffer | None = None
        self.busy = False  # a delivery is in flight: never two requests for one cohort at once
        self.forced = False  # a revoke or shutdown: send everything now, whatever the linger


class Take(enum.Enum):
    """How much of a cohort's buffer one delivery takes."""

    EVERYTHING = "everything"
    FULL_BODIES = "full bodies"  # the remainder of each action stays, to be filled
    LARGER_ACTION = "larger action"  # memory pressure: all of the action holding most


class Pick(NamedTuple):
    cohort: Cohort
    take: Take


class Timing(NamedTuple):
    """How long a buffer may wait, in seconds: `linger` once caught up; `max_hold` while
    catching up, after which its remainder goes too (it holds back every commit of its
    partitions until sent)."""

    linger: float
    max_hold: float

    def wait(self, scarce: bool) -> float:
        """How long a buffer waits before it is due whole."""
        return self.max_hold if scarce else self.linger


def due(cohort: Cohort, now: float, timing: Timing, max_bytes: int, scarce: bool) -> Pick | None:
    """Whether this cohort should be sent now, and how much of it."""
    buf = cohort.open
    if buf is None or cohort.busy:
        return None
    if cohort.forced or now - buf.opened_at >= timing.wait(scarce):
        return Pick(cohort, Take.EVERYTHING)
    if buf.has_full_body(max_bytes):
        return Pick(cohort, Take.FULL_BODIES)
    return None


def pick_due(
    cohorts: Iterable[Cohort], now: float, timing: Timing, max_bytes: int, scarce: bool
) -> Pick | None:
    """The due cohort whose oldest event has waited longest: oldest-first, so none starves.

    `scarce`: a backlog waits in Kafka, so the API budget is the limit and only full bodies
    are worth a request (the remainder fills up from the backlog).
    """
    best: Pick | None = None
    best_at = float("inf")
    for cohort in cohorts:
        pick = due(cohort, now, timing, max_bytes, scarce)
        if pick is not None and cohort.open is not None and cohort.open.opened_at < best_at:
            best, best_at = pick, cohort.open.opened_at
    return best


def pick_largest(cohorts: Iterable[Cohort]) -> Pick | None:
    """Under memory pressure with no full body anywhere: the idle cohort whose larger action
    holds most. One nearly full request frees the most memory per token spent."""
    idle = [c for c in cohorts if c.open is not None and not c.busy]
    if not idle:
        return None
    return Pick(max(idle, key=_larger_action_bytes), Take.LARGER_ACTION)


def _larger_action_bytes(cohort: Cohort) -> int:
    buf = cohort.open
    return max(buf.add_bytes, buf.remove_bytes) if buf is not None else 0
