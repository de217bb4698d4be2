"""Memory freed after a burst goes back to the operating system.

The C library's malloc keeps what it was given back for reuse: the buffers' storage (Rust),
librdkafka's fetch queues, large tables, and, under PYTHONMALLOC=malloc, Python's objects too.
Without a trim a drained streamer would keep a burst's peak RSS for good. glibc's
malloc_trim(0) returns every free page; it walks the heap (a few milliseconds), so it runs
only when the pipeline has let go of enough, and at most once a second.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RELEASE_BYTES = 4 * 2**20  # trim once the pipeline holds this much less than at its high point
MIN_INTERVAL_SECONDS = 1.0
# a tracked cohort's own memory beside its events' bytes: its Python objects (690 B measured
# with sys._debugmallocstats for a one-event buffer) and its buffer's Rust tables
COHORT_BYTES = 1024


def held_bytes(buffered_bytes: int, cohorts: int) -> int:
    """Roughly what the pipeline holds: its events' bytes and its cohorts."""
    return buffered_bytes + cohorts * COHORT_BYTES


def malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def release_heap() -> Callable[[], object]:
    """What a trim does: collect reference cycles, then malloc_trim where the C library has it."""
    trim = malloc_trim()

    def release() -> None:
        gc.collect()
        if trim is not None:
            trim()

    return release


class Trimmer:
    """Trims after the pipeline's holdings fell RELEASE_BYTES below their high point since the
    last trim: a burst drained, or enough of it."""

    def __init__(
        self,
        trim: Callable[[], object] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = trim
        self._clock = clock
        self._high = 0
        self._next_at = 0.0
        self.trims = 0

    def observe(self, held: int) -> None:
        self._high = max(self._high, held)
        if self._trim is None or self._high - held < RELEASE_BYTES:
            return
        now = self._clock()
        if now < self._next_at:
            return  # the condition holds on: the next observation after the interval trims
        self._trim()
        self.trims += 1
        self._high = held
        self._next_at = now + MIN_INTERVAL_SECONDS
        log.debug("heap trimmed: the pipeline holds about %d bytes", held)
