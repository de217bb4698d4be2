"""The gauges sampled by the housekeeping task: the pipeline's state, the API budget and the
consumer lag."""

from __future__ import annotations

from streamer.metrics import Metrics
from streamer.pipeline import Pipeline
from streamer.ratelimit import RateLimiter
from streamer.source import KafkaSource


def show_pipeline(metrics: Metrics, pipeline: Pipeline, limiter: RateLimiter) -> None:
    m, p = metrics, pipeline
    m.buffered_events.set(p.buffered_events)
    m.catching_up.set(1 if p.catching_up else 0)
    m.buffered_bytes.set(p.buffered_bytes)
    m.buffered_cohorts.set(p.cohorts.buffered)
    m.cohorts_tracked.set(len(p.cohorts))
    m.assigned_partitions.set(len(p.tracker.assigned()))
    show_budget(m, limiter)


def show_budget(metrics: Metrics, limiter: RateLimiter) -> None:
    """The budget, this replica's share and its tokens: O(1), every tick (and at start, so the
    share is never read as 0)."""
    metrics.budget.set(limiter.budget)
    metrics.budget_share.set(limiter.paced_share)
    metrics.budget_tokens_used.set(limiter.used())
    metrics.budget_tokens_available.set(limiter.available())


def show_demand(metrics: Metrics, pipeline: Pipeline, limiter: RateLimiter) -> None:
    """Demand against supply, from the streams with buffered changes (O(buffered): run every
    few seconds, not every tick).

    Demand is an estimate: each stream sends once per linger, so it wants window / linger
    requests per window (retries, splits and full bodies sent early are not counted). Supply
    is the paced rate: with more streams than it serves per linger, each waits its turn.
    """
    streams = pipeline.cohorts.streams()
    linger = pipeline.settings.batching.linger_ms / 1000
    pace = limiter.pace_per_second()
    metrics.effective_linger.set(max(linger, streams / pace))
    if linger > 0:
        metrics.budget_demand.set(streams * limiter.window_seconds / linger)
    else:  # every change wants a request of its own at once
        metrics.budget_demand.set(float("inf") if streams else 0.0)


async def show_lag(metrics: Metrics, pipeline: Pipeline, source: KafkaSource) -> None:
    """Per assigned partition: the high watermark (cached by librdkafka) minus our commit
    point. A partition without a known high watermark yet has no series."""
    tracker = pipeline.tracker
    highs = await source.high_watermarks(tracker.assigned())
    positions = tracker.committed_offsets()
    metrics.consumer_lag.clear()
    for (topic, partition), high in highs.items():
        position = positions.get((topic, partition))
        if position is not None:
            lag = max(0, high - position)
            metrics.consumer_lag.labels(topic, str(partition)).set(lag)
