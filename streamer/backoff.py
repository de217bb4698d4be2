"""How long a retried request waits: pure functions of the attempt, the answer and the config.

Full-jitter exponential backoff (retries of many cohorts spread out instead of arriving
together), never shorter than the Retry-After the API asked for, which is honoured only up to
a cap (a server asking for an hour must not stall a cohort for an hour).
"""

from __future__ import annotations

from collections.abc import Callable

from streamer.config import MoEngageConfig

# uniform(low, high): random.uniform, or a fixed choice in tests
Uniform = Callable[[float, float], float]

# 2**20 times the initial delay is past any sane retry_max_seconds; the cap keeps the
# exponent (and the float) bounded however long a retry loop runs
MAX_DOUBLINGS = 20


def retry_delay(
    attempt: int, retry_after: float | None, config: MoEngageConfig, uniform: Uniform
) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry)."""
    doublings = min(max(attempt, 0), MAX_DOUBLINGS)
    ceiling = min(config.retry_max_seconds, config.retry_initial_seconds * 2**doublings)
    delay = uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, honoured(retry_after, config))
    return delay


def rate_limit_hold(retry_after: float | None, config: MoEngageConfig) -> float:
    """After a 429: how long the rate limiter holds back (a second without Retry-After)."""
    return honoured(retry_after if retry_after is not None else 1.0, config)


def honoured(retry_after: float, config: MoEngageConfig) -> float:
    """The part of a Retry-After the streamer obeys."""
    return min(retry_after, config.retry_after_cap_seconds)
