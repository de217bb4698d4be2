"""The gauges sampled by the housekeeping task: the pipeline's state and the consumer lag."""

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
    m.rate_limit.set(limiter.limit)
    m.budget_share.set(limiter.limit)


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
