"""The step phase's time line: latency and budget use per bucket, and when latency recovered.

Times are seconds since the load's first event (wall clock). Latency is bucketed by when an
event was produced (what the users of that moment waited), requests and refusals by when the
API answered them (what the budget saw at that moment).
"""

from __future__ import annotations

import math
from typing import Any

from tests.bench.live import LiveEvent, quantiles

# Light-load level after the step down: the light-load target (linger + 0.2 s), or, on a machine
# so loaded that the run's own first light period misses it, that period's p99 with 20% slack:
# recovery is about the backlog the heavy step left, not about the machine's other tenants.
LIGHT_MARGIN_S = 0.2
LIGHT_SLACK = 1.2


def light_level(
    done: list[tuple[LiveEvent, float]], start: float, light_s: float, linger_s: float
) -> tuple[float | None, float]:
    """(p99 of the events of the first `light_s` seconds, the latency that counts as light)."""
    first = [seconds for e, seconds in done if e.ts_ms / 1000 - start < light_s]
    p99 = quantiles(first)["p99_s"]
    level = linger_s + LIGHT_MARGIN_S
    return p99, level if p99 is None else max(level, LIGHT_SLACK * p99)


def budget_use(
    accepted: list[dict[str, Any]], refused: list[dict[str, Any]], start: float, bucket_s: float
) -> dict[str, list[float]]:
    """Requests accepted per second and 429s, per bucket, from the first event to the last
    answer."""
    times = [r["t"] - start for r in accepted] + [r["t"] - start for r in refused]
    buckets = math.floor(max(times, default=0.0) / bucket_s) + 1
    requests = [0] * buckets
    status_429 = [0] * buckets
    for r in accepted:
        requests[_bucket(r["t"] - start, bucket_s)] += 1
    for r in refused:
        if r["status"] == 429:
            status_429[_bucket(r["t"] - start, bucket_s)] += 1
    return {
        "t": [i * bucket_s for i in range(buckets)],
        "requests_per_s": [n / bucket_s for n in requests],
        "status_429": [float(n) for n in status_429],
    }


def _bucket(t: float, bucket_s: float) -> int:
    return max(0, math.floor(t / bucket_s))  # an answer just before the first event: bucket 0


def recovered_after(
    latency: dict[str, list[float | None]], step_down_s: float, level_s: float, bucket_s: float
) -> float | None:
    """Seconds from the step down until every later bucket's p99 is within `level_s`; None if
    the last bucket still misses it (the run ended before latency recovered)."""
    after = [
        (t, p99)
        for t, p99 in zip(latency["t"], latency["p99_s"], strict=True)
        if t is not None and t >= step_down_s and p99 is not None
    ]
    if not after:
        return None
    missed = [t for t, p99 in after if p99 > level_s]
    if not missed:
        return 0.0
    if missed[-1] == after[-1][0]:
        return None
    return missed[-1] + bucket_s - step_down_s
