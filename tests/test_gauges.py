"""streamer/gauges.py: the budget gauges read the limiter and the streams with buffered changes."""

from __future__ import annotations

import orjson
from confluent_kafka import Message

from streamer.config import Settings
from streamer.gauges import show_demand, show_pipeline
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition
from streamer.pipeline import Pipeline
from streamer.ratelimit import PACING_MARGIN_SECONDS, RateLimiter, burst_of
from tests.test_ratelimit import FakeClock

P0: TopicPartition = ("events", 0)
BUDGET, WINDOW = 300, 60.0
FULL_PACE = (BUDGET - burst_of(BUDGET)) / (WINDOW + PACING_MARGIN_SECONDS)


def pipeline(limiter: RateLimiter, metrics: Metrics, linger_ms: int = 1000) -> Pipeline:
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "dlq"},
            "moengage": {
                "base_url": "http://unused",
                "rate_limit_per_minute": BUDGET,
                "rate_window_seconds": WINDOW,
            },
            "batching": {"linger_ms": linger_ms},
        }
    )
    return Pipeline(settings, None, limiter, None, metrics)  # type: ignore[arg-type]


def event(offset: int, cohort: str, enter: bool) -> Message:
    action = "enter" if enter else "exit"
    value = orjson.dumps({"action": action, "cohort_id": cohort, "uid": f"u{offset}", "ts": 1})
    return Message(topic="events", partition=0, offset=offset, value=value)


def gauge(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(f"cohort_streamer_{name}")
    assert value is not None, name
    return value


async def test_share_and_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(BUDGET, WINDOW, clock)
    m = Metrics()
    p = pipeline(limiter, m)
    await limiter.acquire()
    await limiter.acquire()
    limiter.release()
    show_pipeline(m, p, limiter)
    assert gauge(m, "budget_per_minute") == BUDGET
    assert gauge(m, "budget_share_per_minute") == BUDGET
    assert gauge(m, "budget_tokens_used") == 2  # one in flight, one answered
    assert gauge(m, "budget_tokens_available") == burst_of(BUDGET) - 2
    limiter.set_share(120)
    limiter.on_rate_limited(1.0)
    show_pipeline(m, p, limiter)
    assert gauge(m, "budget_per_minute") == BUDGET  # the workspace's, whatever the share
    assert gauge(m, "budget_share_per_minute") == 120 * 0.75
    assert gauge(m, "budget_tokens_available") == 0  # paused


async def test_demand_and_effective_linger_follow_the_streams() -> None:
    limiter = RateLimiter(BUDGET, WINDOW, FakeClock())
    m = Metrics()
    p = pipeline(limiter, m)
    await p.assigned([P0])
    # a: both actions, b: adds only, c: removes only -> 4 streams
    p.ingest([event(0, "a", True), event(1, "a", False), event(2, "b", True)])
    p.ingest([event(3, "c", False), event(4, "b", True)])
    show_demand(m, p, limiter)
    assert gauge(m, "budget_demand_per_minute") == 4 * WINDOW / 1.0
    assert gauge(m, "effective_linger_seconds") == 1.0  # 4 streams need < 1 s of the pace
    p.ingest([event(10 + i, f"k{i // 2}", i % 2 == 0) for i in range(40)])
    # 20 more cohorts with both actions: 44 streams, more than the pace serves in a linger
    show_demand(m, p, limiter)
    assert gauge(m, "budget_demand_per_minute") == 44 * WINDOW / 1.0
    assert gauge(m, "effective_linger_seconds") == 44 / FULL_PACE
    await p.stop()
