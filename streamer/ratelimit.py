"""The request budget, paced: requests leave at the pace this replica's share sustains, and no
sliding window of the API ever sees more than that share.

A request needs a slot of the log AND a token of the bucket:

- The hard rule is a sliding-window log, not a token bucket (a bucket with a full-window burst
  allows 2x in a window). A slot is taken at send and held until `window` after the response:
  the server counts arrivals, which fall between our send and its response, so every server
  window that holds an arrival finds that slot still held. Every request takes a slot: first
  tries, retries, halves.
- Pacing is a token bucket with a small burst (BURST_FRACTION of the share, 1 to MAX_BURST
  tokens: enough for every stream of a light load falling due at once), refilled at
  (share - burst) per (window + PACING_MARGIN_SECONDS). A full bucket plus one window of refill
  stays under the share, so at steady state the log never fills: requests leave evenly instead
  of exhausting the window and then starving for the rest of it. The dispatcher seals a cohort
  when a token is there, so while tokens are scarce buffers keep filling and each stream's
  effective linger grows with demand over supply by itself.

The share starts as the configured workspace budget; groupshare.py sets this replica's part of
it at runtime (set_share). A decrease applies at once (the bucket is capped to the new burst,
the log's limit drops; slots already held stay held); an increase applies from now on.

A 429 pauses sending until Retry-After and slows the pacing by DECREASE_FACTOR, never below
MIN_PACING of the share; the pacing recovers linearly to the full share within one window. The
budget is known, so a 429 means another client uses the workspace or the server's window and
ours disagree at an edge: halving on every 429 (down to a request a minute, as a storm once
drove a replica) only loses throughput. The 429s that arrive during one pause count once: they
answer requests already in flight when the first came back.
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
# the bucket refills over a window plus this: room for the slot margin and response times, so
# paced requests never find the log full at steady state
PACING_MARGIN_SECONDS = 1.0
# 2% of the share (5 at the default 300/min) goes at once: light loads keep their linger
BURST_FRACTION = 0.02
MAX_BURST = 5
DECREASE_FACTOR = 0.75  # of the pacing, per pause a 429 starts
MIN_PACING = 0.5  # of the share: no number of 429s slows the pacing further
MIN_SHARE = 1  # a replica always keeps one request per window (a revoke must flush)


def burst_of(share: int) -> int:
    """The tokens a full bucket holds for this share."""
    return max(1, min(MAX_BURST, math.floor(share * BURST_FRACTION)))


class RateLimiter:
    def __init__(
        self,
        budget: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget  # the configured workspace budget per window
        self.window_seconds = window_seconds
        self.window = window_seconds + WINDOW_MARGIN_SECONDS  # how long a slot is held
        self._clock = clock
        self._share = max(MIN_SHARE, budget)
        self._pacing = 1.0  # the fraction of the share's pace in force (lowered by 429s)
        self._tokens = float(burst_of(self._share))
        self._refilled_at = clock()  # tokens and pacing are up to date as of then
        self._inflight = 0
        self._expiries: deque[float] = deque()  # when each completed request's slot frees
        self._paused_until = 0.0
        self._turn = asyncio.Lock()  # FIFO: waiters are served in arrival order
        self._changed = asyncio.Event()

    # --- what the gauges show ---

    @property
    def share(self) -> int:
        """Requests per window this replica may send: the log's limit."""
        return self._share

    @property
    def paced_share(self) -> float:
        """The share after 429 back-off: requests per window the pacing lets out now."""
        self._refill(self._clock())
        return self._share * self._pacing

    def pace_per_second(self) -> float:
        """How many tokens a second the bucket gains now (past the burst)."""
        self._refill(self._clock())
        return self._pacing * self._full_pace()

    def used(self) -> int:
        """Slots held: requests in flight or answered within the last window."""
        self._prune(self._clock())
        return self._inflight + len(self._expiries)

    # --- sending ---

    def available(self) -> int:
        """Requests that could start now: tokens in the bucket and free slots in the log."""
        now = self._clock()
        self._prune(now)
        if now < self._paused_until:
            return 0
        self._refill(now)
        free = self._share - self._inflight - len(self._expiries)
        return max(0, min(free, math.floor(self._tokens)))

    def has_capacity(self) -> bool:
        """True when a request could start now without waiting (nobody queued ahead)."""
        return not self._turn.locked() and self.available() > 0

    async def acquire(self) -> None:
        """Wait for a token and a slot, first come first served; call release() after."""
        async with self._turn:
            while self.available() <= 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self._seconds_to_next_slot())
            self._tokens -= 1
            self._inflight += 1

    def release(self) -> None:
        """The response (or failure) arrived: the slot stays held for one more window."""
        self._inflight -= 1
        self._expiries.append(self._clock() + self.window)
        self._changed.set()

    # --- changes: the group's share, the server's 429 ---

    def set_share(self, per_window: int) -> None:
        """This replica's part of the workspace budget (at least MIN_SHARE).

        The bucket is brought up to date at the old pace first, so an increase is never
        back-dated; a decrease caps the bucket to the new burst and the log's limit at once.
        """
        self._refill(self._clock())
        self._share = max(MIN_SHARE, per_window)
        self._tokens = min(self._tokens, burst_of(self._share))
        self._changed.set()

    def on_rate_limited(self, retry_after: float) -> None:
        """A 429: hold every send until Retry-After has passed; the first 429 of a pause also
        slows the pacing and empties the bucket (the server is full now)."""
        now = self._clock()
        if now >= self._paused_until:
            self._refill(now)
            self._pacing = max(MIN_PACING, self._pacing * DECREASE_FACTOR)
            self._tokens = 0.0
        self._paused_until = max(self._paused_until, now + retry_after)
        # the bucket (and the pacing's recovery) start again when the pause ends
        self._refilled_at = max(self._refilled_at, self._paused_until)
        self._changed.set()

    # --- internals ---

    def _full_pace(self) -> float:
        """Tokens per second at full pacing; never zero, even for a share of one."""
        refill = max(1, self._share - burst_of(self._share))
        return refill / (self.window_seconds + PACING_MARGIN_SECONDS)

    def _refill(self, now: float) -> None:
        elapsed = now - self._refilled_at
        if elapsed <= 0:
            return
        self._refilled_at = now
        before = self._pacing
        recovery = (1.0 - MIN_PACING) * elapsed / self.window_seconds
        self._pacing = min(1.0, before + recovery)
        mean_pacing = (before + self._pacing) / 2  # exact while recovering linearly
        gained = elapsed * mean_pacing * self._full_pace()
        self._tokens = min(float(burst_of(self._share)), self._tokens + gained)

    def _prune(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0] <= now:
            expiries.popleft()

    def _seconds_to_next_slot(self) -> float:
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        token_wait = (1.0 - self._tokens) / (self._pacing * self._full_pace())
        # the slot that frees the log: the (excess)th expiry, if enough are scheduled
        excess = self._inflight + len(self._expiries) - self._share
        if excess < 0:
            slot_wait = 0.0
        elif excess < len(self._expiries):
            slot_wait = self._expiries[excess] - now
        else:
            slot_wait = 0.5  # only in-flight requests hold it: a release() wakes us; poll gently
        return max(0.001, token_wait, slot_wait)
