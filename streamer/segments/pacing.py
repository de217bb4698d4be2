"""Client-side pacing by the documented limits, so `apply` waits instead of meeting a 429.

It can only count this process's own calls: calls made elsewhere in the same workspace still
share the API's budget, and their 429s are reported like any other API error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from streamer.segment_limits import Quota


class Pacer:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[str, deque[float]] = {}

    async def wait(self, operation: str, quotas: Sequence[Quota]) -> None:
        """Return when one more `operation` call fits every quota, and count it."""
        sent = self._sent.setdefault(operation, deque())
        while (delay := self._delay(sent, quotas)) > 0:
            await self._sleep(delay)
        sent.append(self._clock())
        longest = max(q.seconds for q in quotas)
        while sent and sent[0] <= self._clock() - longest:
            sent.popleft()

    def _delay(self, sent: deque[float], quotas: Sequence[Quota]) -> float:
        now = self._clock()
        delay = 0.0
        for quota in quotas:
            inside = [t for t in sent if t > now - quota.seconds]
            if len(inside) >= quota.limit:
                # the call that frees a slot is the limit-th most recent one
                delay = max(delay, inside[len(inside) - quota.limit] + quota.seconds - now)
        return delay
