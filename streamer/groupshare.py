"""One API budget for the whole consumer group: each member derives its share from Kafka.

`moengage.rate_limit_per_minute` is the workspace's budget. Every member reads the same facts
from Kafka every POLL_INTERVAL_SECONDS (groupview.py: the members, what each owns, each one's
lag) and applies the same pure rule (`shares`), so the members agree on a split without talking
to each other, and the budget follows the load: a member with a backlog gets what idle ones do
not need. The limiter paces at share/window, so when the members' shares sum to at most the
budget at every instant, no window of the API holds more than the budget.

Why Kafka and not Redis: Kafka already runs beside every deployment, and the group coordinator
already knows who is a member and what each owns. An exact shared limiter in Redis would be one
more stateful service to run, secure and watch (and one more failure: Redis down), while rates
that sum to the budget need no exact shared counter.

Failure modes and their cost:
- librdkafka aborts the admin client's process (#4605, a drop mid-request): that process is
  the group reader's child (groupview.py), so one read fails, as below, and the next starts a
  new child.
- an admin call fails or times out: the last share is kept for STALE_SECONDS, then becomes
  budget / members last seen (the whole budget if the group was never read: a lone replica
  must not sit at the floor because it may not describe its group); logged once while
  failing, counted in a metric. If only some members fail, the group may exceed the budget by
  their even shares: 429s follow, which pause and slow the pacing but never collapse it.
- this member not in the description yet (it just joined, or a rebalance it has not learned
  of): the floor until it appears (read every TICK_SECONDS meanwhile); the RESERVE absorbs it.
- a dead member stays listed until its session times out: its share stays reserved (correct:
  it may still be sending); the survivors take it up to session.timeout.ms + RAISE_AFTER later.
- members poll at different moments: a lower share applies at once, a higher one only after
  it held for RAISE_AFTER_SECONDS, longer than a poll plus its latency, so every other member
  has lowered its own share before this one rises.
- lag is read from committed offsets, stale by the commit interval: a backlog is seen up to
  that much late (plus a poll), and a drained one keeps its weight that much longer.
A member alone in the group takes the whole budget at once: there is no other member to wait
for, and a member joining gets partitions only in a rebalance this one sees at its next poll
(meanwhile the joiner sends at its floor: at most floor x poll / window requests).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Set
from concurrent.futures import ThreadPoolExecutor

from streamer.groupview import GroupView
from streamer.metrics import Metrics
from streamer.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# about one full body of changes: below it a member counts as light, so at light load the
# budget splits evenly and an idle member is not starved when its next events arrive
LIGHT_LAG_EVENTS = 1_000
RESERVE_FRACTION = 0.02  # kept unallocated for a member the others have not learned of yet
FLOOR_FRACTION = 0.02  # every member's minimum, so it can always start sending
POLL_INTERVAL_SECONDS = 1.0
# longer than a poll plus its latency: every other member has polled (and lowered) by then
RAISE_AFTER_SECONDS = 2.5
STALE_SECONDS = 30.0  # how long the last share outlives the last successful read
TICK_SECONDS = 0.5  # how often a pending raise is checked between reads
# a read slower than this may be older than the others' lowering: it may lower, never raise
FRESH_READ_SECONDS = RAISE_AFTER_SECONDS - POLL_INTERVAL_SECONDS


def reserve_of(budget: int) -> int:
    return max(1, math.floor(budget * RESERVE_FRACTION))


def floor_of(budget: int) -> int:
    return max(1, math.floor(budget * FLOOR_FRACTION))


def shares(
    budget: int, lags: Mapping[str, int | None], flowing: Set[str] = frozenset()
) -> dict[str, int]:
    """Each member's requests per window, from its lag (None: it owns no partition).

    Alone, a member gets the whole budget. Otherwise every member gets the floor, RESERVE stays
    unallocated, and the rest goes to the members that own partitions in proportion to
    max(lag, LIGHT_LAG_EVENTS), an idle one (lag 0) weighing nothing unless all are idle; a
    member without partitions gets the floor only (it has nothing to send; the floor covers the
    partitions it may get before the others' next poll). An idle member whose events start
    sends at its floor (a burst of one, then one request per 50th of the window) until its lag
    shows at the next poll and its share rises RAISE_AFTER_SECONDS later: ~4 s, the price of a
    hot member getting 94% of the budget instead of sharing it with idle ones.
    The shares sum to at most budget - reserve whenever budget >= reserve + members x floor
    (a smaller budget cannot give each member one request per window).
    """
    if len(lags) == 1:
        return dict.fromkeys(lags, budget)
    floor = floor_of(budget)
    spare = max(0, budget - reserve_of(budget) - floor * len(lags))
    weights = {m: _weight(lag, m in flowing) for m, lag in lags.items() if lag is not None}
    total = sum(weights.values())
    if not total:  # nobody is behind: whoever gets events first starts from an even share
        weights = dict.fromkeys(weights, 1)
        total = len(weights)
    return {m: floor + (spare * weights[m] // total if m in weights else 0) for m in lags}


def _weight(lag: int, flowing: bool) -> int:
    """A member with no lag and no events of late is idle (floor only: a hot member needs its
    share); one with lag, or whose partitions received events lately (its lag reads 0 between
    two commits), weighs at least LIGHT_LAG_EVENTS."""
    return max(lag, LIGHT_LAG_EVENTS) if lag or flowing else 0


class RaiseDelay:
    """The effective share: the lowest share offered over the last `hold` seconds.

    A decrease applies at once; an increase once it has held for `hold` seconds. Kept as the
    steps of a step function: the one in force `hold` seconds ago and every later one.
    """

    def __init__(self, initial: int, now: float, hold: float = RAISE_AFTER_SECONDS) -> None:
        self._hold = hold
        self._steps: deque[tuple[float, int]] = deque([(now, initial)])

    def offer(self, share: int, now: float) -> None:
        if share != self._steps[-1][1]:
            self._steps.append((now, share))

    def reset(self, share: int, now: float) -> None:
        """Apply `share` at once, raise or not (nobody else to wait for)."""
        self._steps = deque([(now, share)])

    def effective(self, now: float) -> int:
        steps = self._steps
        while len(steps) > 1 and steps[1][0] <= now - self._hold:
            steps.popleft()
        return min(share for _, share in steps)


class GroupShare:
    """Polls the group off the event loop and applies this member's share to the limiter."""

    def __init__(
        self,
        budget: int,
        read: Callable[[], GroupView],
        member_id: Callable[[], str | None],
        limiter: RateLimiter,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budget = budget
        self._read = read  # blocks: runs on this poller's own thread
        self._member_id = member_id
        self._limiter = limiter
        self._metrics = metrics
        self._clock = clock
        now = clock()
        # until this member sees itself in the group, it may be one the others do not know of
        self._delay = RaiseDelay(floor_of(budget), now)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-share")
        self._last_read = now
        self._members_seen = 0
        self._seen_self = False  # this member has found itself in the group's description
        self._failing = False
        self.apply()

    async def run_forever(self) -> None:
        next_read = self._clock()
        while True:
            try:
                if self._clock() >= next_read:
                    # until it finds itself in the group a member sits at the floor: look soon
                    interval = POLL_INTERVAL_SECONDS if self._seen_self else TICK_SECONDS
                    next_read = self._clock() + interval
                    await self.poll()
                self.apply()
            except Exception:  # a bug: logged, and the share held meanwhile is kept
                log.exception("group budget: poll failed; trying again")
            await asyncio.sleep(TICK_SECONDS)

    async def poll(self) -> None:
        """Read the group once and offer the share it implies (or handle the failure)."""
        loop = asyncio.get_running_loop()
        started = self._clock()
        try:
            me = self._member_id()
            view = await loop.run_in_executor(self._thread, self._read)
        except Exception as exc:  # anything the admin client raises: a failed poll, not a crash
            self._on_failure(exc)
            return
        if view.stable:  # while it rebalances, the shares of the last stable view hold
            self._on_view(me, view, fresh=self._clock() - started <= FRESH_READ_SECONDS)

    def _on_view(self, me: str | None, view: GroupView, fresh: bool) -> None:
        now = self._clock()
        if self._failing:
            log.info("group budget: reading the group works again")
            self._failing = False
        self._last_read = now
        self._members_seen = len(view.lags)
        self._seen_self = me is not None and me in view.lags
        self._metrics.budget_group_members.set(len(view.lags))
        if me is not None and self._seen_self:
            share = shares(self._budget, view.lags, view.flowing)[me]
        else:
            share = floor_of(self._budget)
        if not fresh:
            self._delay.offer(min(share, self._delay.effective(now)), now)
        elif self._seen_self and len(view.lags) == 1:
            self._delay.reset(share, now)  # alone: nobody else to wait for
        else:
            self._delay.offer(share, now)

    def _on_failure(self, exc: Exception) -> None:
        self._metrics.budget_poll_failures.inc()
        if not self._failing:
            log.warning("group budget: cannot read the group (keeping the last share): %r", exc)
            self._failing = True
        now = self._clock()
        if now - self._last_read > STALE_SECONDS:
            # an even split of the members last seen (none seen: this one alone takes the
            # budget, as a single replica must); a raise still waits RAISE_AFTER_SECONDS
            self._delay.offer(self._budget // max(1, self._members_seen), now)

    def apply(self) -> None:
        """Hand the effective share to the limiter (its gauge is sampled with the limiter's)."""
        self._limiter.set_share(self._delay.effective(self._clock()))

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
