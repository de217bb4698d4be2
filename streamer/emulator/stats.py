"""Request statistics for Cohort Sync, served by `GET /_emulator/stats`.

Times are the emulator clock (monotonic seconds by default): only differences are meaningful.
"Arrivals" are every POST to the Cohort Sync path, whatever the answer; "accepted" are the 2xx
ones. Window peaks use the rate window in force when each event was recorded.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from .ratelimit import SlidingWindow

# Timestamps kept for `?timestamps=1`; bounded so a long-running demo does not grow forever.
MAX_TIMESTAMPS = 200_000


@dataclass(slots=True)
class Summary:
    """count/sum/min/max of a quantity, without keeping every value."""

    count: int = 0
    total: int = 0
    minimum: int = 0
    maximum: int = 0

    def add(self, value: int) -> None:
        self.minimum = value if self.count == 0 else min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        self.count += 1
        self.total += value

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "sum": self.total, "min": self.minimum, "max": self.maximum}


class Stats:
    def __init__(self, window_seconds: float) -> None:
        self.by_status: Counter[int] = Counter()
        self.by_action: Counter[str] = Counter()
        self.members_by_action: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.members = Summary()  # members per accepted request
        self.accepted_bytes = Summary()  # body bytes per accepted request
        self.bytes_received = 0  # body bytes read, all requests
        self.max_body_bytes = 0
        self.memberships_changed = 0
        self.segments_api_requests = 0
        self.file_results: Counter[str] = Counter()  # file jobs' callback statuses
        self.requests_total = 0
        # requests of one cohort being handled at once; a well-behaved client keeps this at 1
        self.in_flight_by_cohort: Counter[str] = Counter()
        self.max_in_flight_per_cohort = 0
        self.arrival_times: deque[float] = deque(maxlen=MAX_TIMESTAMPS)
        self.accepted_times: deque[float] = deque(maxlen=MAX_TIMESTAMPS)
        self._arrivals = SlidingWindow(window_seconds)
        self._accepted = SlidingWindow(window_seconds)

    def set_window(self, seconds: float) -> None:
        self._arrivals.seconds = seconds
        self._accepted.seconds = seconds

    def record_arrival(self, now: float) -> None:
        self.requests_total += 1
        self.arrival_times.append(now)
        self._arrivals.add(now)

    def cohort_started(self, cohort_id: str) -> None:
        self.in_flight_by_cohort[cohort_id] += 1
        self.max_in_flight_per_cohort = max(
            self.max_in_flight_per_cohort, self.in_flight_by_cohort[cohort_id]
        )

    def cohort_finished(self, cohort_id: str) -> None:
        self.in_flight_by_cohort[cohort_id] -= 1

    def record_body(self, size: int) -> None:
        self.bytes_received += size
        self.max_body_bytes = max(self.max_body_bytes, size)

    def record_status(self, status: int) -> None:
        self.by_status[status] += 1

    def record_injected(self, kind: str) -> None:
        self.injected[kind] += 1

    def record_accepted(
        self, now: float, action: str, members: int, body_bytes: int, changed: int
    ) -> None:
        self.accepted_times.append(now)
        self._accepted.add(now)
        self.by_action[action] += 1
        self.members_by_action[action] += members
        self.members.add(members)
        self.accepted_bytes.add(body_bytes)
        self.memberships_changed += changed

    def to_json(self, include_times: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests_total": self.requests_total,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "by_action": dict(self.by_action),
            "members_by_action": dict(self.members_by_action),
            "members_per_request": self.members.to_json(),
            "accepted_body_bytes": self.accepted_bytes.to_json(),
            "bytes_received": self.bytes_received,
            "max_body_bytes": self.max_body_bytes,
            "memberships_changed": self.memberships_changed,
            "injected": dict(self.injected),
            "window_seconds": self._accepted.seconds,
            "max_accepted_in_window": self._accepted.peak,
            "max_arrivals_in_window": self._arrivals.peak,
            "segments_api_requests": self.segments_api_requests,
            "file_results": dict(self.file_results),
            "max_in_flight_per_cohort": self.max_in_flight_per_cohort,
        }
        if include_times:
            out["arrival_times"] = list(self.arrival_times)
            out["accepted_times"] = list(self.accepted_times)
        return out
