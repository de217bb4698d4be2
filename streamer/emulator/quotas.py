"""Per-operation request quotas of the v2/v3 Segments APIs (limits: streamer/segment_limits.py).

Each operation has its own windows (e.g. v3 create: 50 a minute, 200 an hour, 1,000 a day);
a request is admitted when every window has room, and only admitted requests are counted, so
a client that backs off after a 429 is not punished for the refused attempts.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamer.segment_limits import Quota

from .ratelimit import SlidingWindow


class Quotas:
    """Admission against every quota of each named operation."""

    def __init__(self) -> None:
        self._windows: dict[str, list[tuple[Quota, SlidingWindow]]] = {}

    def admit(self, operation: str, quotas: Sequence[Quota], now: float) -> Quota | None:
        """None when admitted (and counted); otherwise the full quota with the longest window,
        the one that decides how long the caller must wait."""
        windows = self._windows.setdefault(
            operation, [(q, SlidingWindow(q.seconds)) for q in quotas]
        )
        for quota, window in reversed(windows):  # quotas are listed shortest window first
            if window.count(now) >= quota.limit:
                return quota
        for _, window in windows:
            window.add(now)
        return None


def describe(quota: Quota) -> str:
    """§5.3's wording: "Current limit: n/m mins"."""
    return f"{quota.limit}/{int(quota.seconds // 60)} mins"
