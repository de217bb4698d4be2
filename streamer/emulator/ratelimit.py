"""Sliding-window counting: the Cohort Sync rate limit and the peak-per-window statistics.

A window of `seconds` ending at `now` is the half-open interval (now - seconds, now]: an event
exactly `seconds` old has left it. With that convention "at most N events in any window" is
the same as "the N+1-th most recent event is at least `seconds` old".
"""

from __future__ import annotations

import math
from collections import deque


class SlidingWindow:
    """Timestamps of recent events; `count(now)` is how many fall inside the current window."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._times: deque[float] = deque()
        self.peak = 0  # most events ever seen inside one window

    def count(self, now: float) -> int:
        self._evict(now)
        return len(self._times)

    def add(self, now: float) -> int:
        """Record an event at `now`; returns the window's count including it."""
        self._evict(now)
        self._times.append(now)
        count = len(self._times)
        # The count over a sliding window peaks right after an event, so checking here
        # finds the maximum over every possible window position.
        self.peak = max(self.peak, count)
        return count

    def seconds_until_slot(self, now: float, limit: int) -> float:
        """How long until fewer than `limit` events remain in the window (0 if already so)."""
        self._evict(now)
        if len(self._times) < limit:
            return 0.0
        # The window must drop every event up to the (len - limit + 1)-th oldest.
        blocking = self._times[len(self._times) - limit]
        return max(0.0, blocking + self.seconds - now)

    def _evict(self, now: float) -> None:
        cutoff = now - self.seconds
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()


class RateLimiter:
    """At most `limit` accepted requests in any window of `window.seconds`.

    Only requests the emulator answered with 2xx are recorded, matching the streamer's
    contract ("never exceed the budget of accepted requests in any window"); arrivals are
    counted separately by the statistics.
    """

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.window = SlidingWindow(seconds)

    def reconfigure(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.window.seconds = seconds

    def allows(self, now: float) -> bool:
        return self.window.count(now) < self.limit

    def retry_after_seconds(self, now: float) -> int:
        """Whole seconds (rounded up, at least 1) until a request would be allowed."""
        return max(1, math.ceil(self.window.seconds_until_slot(now, self.limit)))

    def record_accepted(self, now: float) -> int:
        return self.window.add(now)
