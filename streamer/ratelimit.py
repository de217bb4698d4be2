"""The request budget: no sliding window of the API ever sees more than the budget.

A sliding-window log, not a token bucket (a bucket with a full-minute burst allows 2x in a
window). A slot is taken at send and held until `window` after the response: the server counts
arrivals, which fall between our send and its response, so every server window that holds an
arrival finds that slot still held. Every request takes a slot: first tries, retries, halves.

On 429 the budget halves (multiplicative decrease) and sending pauses for Retry-After; it then
grows back by RECOVERY_PER_WINDOW of the configured budget per window (additive increase), so a
budget shared with other clients settles instead of storming.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable

# a response is timed on our clock a hair after the server counted it; keep a small margin
WINDOW_MARGIN_SECONDS = 0.25
DECREASE_FACTOR = 0.5
RECOVERY_PER_WINDOW = 0.1  # of the configured budget: half the budget back in five minutes
MIN_LIMIT = 1.0


class RateLimiter:
    def __init__(
        self,
        budget: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.window = window_seconds + WINDOW_MARGIN_SECONDS
        self._clock = clock
        self._limit = float(budget)
        self._limit_updated = clock()
        self._inflight = 0
        self._expiries: deque[float] = deque()  # when each completed request's slot frees
        self._paused_until = 0.0
        self._turn = asyncio.Lock()  # FIFO: waiters are served in arrival order
        self._changed = asyncio.Event()

    @property
    def limit(self) -> int:
        """The current budget per window after 429 back-off (never above the configured one)."""
        self._recover()
        return max(int(MIN_LIMIT), math.floor(self._limit))

    def available(self) -> int:
        now = self._clock()
        self._prune(now)
        if now < self._paused_until:
            return 0
        return self.limit - self._inflight - len(self._expiries)

    def has_capacity(self) -> bool:
        """True when a request could start now without waiting (nobody queued ahead)."""
        return not self._turn.locked() and self.available() > 0

    async def acquire(self) -> None:
        """Wait for a slot, first come first served; the caller must call release() after."""
        async with self._turn:
            while self.available() <= 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self._seconds_to_next_slot())
            self._inflight += 1

    def release(self) -> None:
        """The response (or failure) arrived: the slot stays held for one more window."""
        self._inflight -= 1
        self._expiries.append(self._clock() + self.window)
        self._changed.set()

    def set_share(self, per_window: int) -> None:
        """This replica's share of the group's budget (groupshare.py) becomes the log's limit;
        a 429 back-off in progress keeps its proportion of the new share."""
        self._recover()
        self._limit = self._limit * per_window / self.budget
        self.budget = per_window
        self._changed.set()

    def on_rate_limited(self, retry_after: float) -> None:
        """A 429: halve the budget and hold every send until Retry-After has passed."""
        self._recover()
        self._limit = max(MIN_LIMIT, self._limit * DECREASE_FACTOR)
        self._paused_until = max(self._paused_until, self._clock() + retry_after)
        self._changed.set()

    def _recover(self) -> None:
        now = self._clock()
        elapsed = now - self._limit_updated
        self._limit_updated = now
        if self._limit < self.budget:
            growth = self.budget * RECOVERY_PER_WINDOW * elapsed / self.window
            self._limit = min(float(self.budget), self._limit + growth)

    def _prune(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0] <= now:
            expiries.popleft()

    def _seconds_to_next_slot(self) -> float:
        now = self._clock()
        waits = [self._paused_until - now] if now < self._paused_until else []
        if self._expiries:
            waits.append(self._expiries[0] - now)
        # nothing scheduled to free: a release() or a recovery step will; poll gently
        return max(0.001, min(waits) if waits else 0.5)
