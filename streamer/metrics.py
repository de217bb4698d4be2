"""Prometheus metrics: the names and labels here are the contract the dashboard and alerts use.

Every label is bounded: action (add_members|remove_members), status class (2xx, 4xx, 5xx, 429,
timeout, error), DLQ reason (the fixed set in decode.REASONS), DLQ write failure cause, retry
cause, topic and partition.
No uid, cohort or URL ever becomes a label.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import confluent_kafka
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from streamer.decode import REASONS
from streamer.version import PYTHON_VERSION, VERSION

# how prometheus_client writes a bucket's `le` ("1.0", "0.05"), so dashboards see one format
_le = cast(Callable[[float], str], floatToGoString)

PREFIX = "cohort_streamer"

ACTIONS = ("add_members", "remove_members")
STATUS_CLASSES = (
    "2xx", "3xx", "400", "401", "403", "413", "429", "4xx", "5xx", "other", "timeout", "error"
)  # fmt: skip
RETRY_CAUSES = (
    "rate_limited", "server_error", "timeout", "connection", "auth", "wrong_endpoint", "too_large"
)  # fmt: skip
DLQ_REASONS = REASONS  # the decoder's reasons: a letter's header is also its metric label
# why a dead-letter write failed (it is retried): librdkafka's error codes, grouped
DLQ_FAILURE_CAUSES = (
    "unknown_topic",
    "too_large",
    "authorization",
    "timeout",
    "unavailable",
    "queue_full",
    "fatal",
    "other",
)

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_MEMBER_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000)
_BYTES_BUCKETS = (1e3, 1e4, 3.2e4, 6.4e4, 9.6e4, 1.1e5, 1.2e5, 1.25e5, 1.28e5)


class Metrics:
    """All metrics of one streamer process, on a registry of its own (tests get theirs)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = PREFIX
        self.build_info = Gauge(
            f"{p}_build_info",
            "Always 1; its labels say which build runs",
            ["version", "python_version", "librdkafka_version"],
            registry=r,
        )
        self.build_info.labels(VERSION, PYTHON_VERSION, confluent_kafka.libversion()[0]).set(1)
        self.events_consumed = Counter(
            f"{p}_events_consumed", "Kafka messages consumed", ["topic"], registry=r
        )
        self.invalid_events = Counter(
            f"{p}_invalid_events", "Events refused, by reason", ["reason"], registry=r
        )
        self.dlq_writes = Counter(
            f"{p}_dlq_writes", "Messages confirmed written to the DLQ", ["reason"], registry=r
        )
        self.dlq_failures = Counter(
            f"{p}_dlq_write_failures",
            "Failed DLQ write attempts by cause (each is retried until it succeeds)",
            ["cause"],
            registry=r,
        )
        self.events_coalesced = Counter(
            f"{p}_events_coalesced", "Events superseded inside a buffer before sending", registry=r
        )
        self.requests = Counter(
            f"{p}_requests",
            "Cohort Sync requests by action and status class",
            ["action", "status_class"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{p}_request_duration_seconds",
            "Cohort Sync request duration",
            ["action"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.retries = Counter(f"{p}_retries", "Request retries by cause", ["cause"], registry=r)
        self.members_per_request = Histogram(
            f"{p}_request_members",
            "Members per Cohort Sync request",
            ["action"],
            buckets=_MEMBER_BUCKETS,
            registry=r,
        )
        self.request_body_bytes = Histogram(
            f"{p}_request_body_bytes",
            "Serialized Cohort Sync body size",
            ["action"],
            buckets=_BYTES_BUCKETS,
            registry=r,
        )
        self.members_acknowledged = Counter(
            f"{p}_members_acknowledged",
            "Members the API accepted",
            ["action"],
            registry=r,
        )
        self.rate_limiter_wait = Histogram(
            f"{p}_rate_limiter_wait_seconds",
            "Time a request waited for a rate-limit slot",
            buckets=(*_DURATION_BUCKETS, 60, 120),
            registry=r,
        )
        self._budget_gauges()
        self.buffered_events = Gauge(
            f"{p}_buffered_events", "Events held in memory, not yet acknowledged", registry=r
        )
        self.buffered_bytes = Gauge(
            f"{p}_buffered_bytes", "Bytes of events held in memory", registry=r
        )
        self.buffered_cohorts = Gauge(
            f"{p}_buffered_cohorts", "Cohorts with a non-empty buffer", registry=r
        )
        self.cohorts_tracked = Gauge(
            f"{p}_cohorts_tracked",
            "Cohorts held in memory: a non-empty buffer or a delivery in flight",
            registry=r,
        )
        self.paused_partitions = Gauge(
            f"{p}_paused_partitions", "Assigned partitions paused for backpressure", registry=r
        )
        self.assigned_partitions = Gauge(
            f"{p}_assigned_partitions", "Partitions assigned to this process", registry=r
        )
        self.inflight_requests = Gauge(
            f"{p}_inflight_requests", "Cohort Sync requests in flight", registry=r
        )
        self.commits = Counter(f"{p}_commits", "Successful offset commits", registry=r)
        self.commit_failures = Counter(
            f"{p}_commit_failures",
            "Partition offsets a commit failed to store (retried)",
            registry=r,
        )
        self.last_commit_timestamp = Gauge(
            f"{p}_last_commit_timestamp_seconds",
            "Unix time of the last successful commit",
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag",
            "High watermark minus committed offset, per assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.ack_latency = AgeHistogram(
            f"{p}_event_ack_latency_seconds",
            "From the event's ts (or Kafka timestamp) to the API's acknowledgement",
            _LATENCY_BUCKETS,
            r,
        )
        self.catching_up = Gauge(
            f"{p}_catching_up",
            "1 while a backlog waits in Kafka: cohorts send only full bodies",
            registry=r,
        )
        self.memory_flushes = Counter(
            f"{p}_memory_flushes",
            "Requests sent before their body was full because buffered events reached the "
            "high-water mark (raise batching.high_water_events if this grows while catching up)",
            registry=r,
        )
        self.rebalances = Counter(
            f"{p}_rebalances", "Partition assignment changes", ["kind"], registry=r
        )
        self.auth_failing = Gauge(
            f"{p}_auth_failing", "1 while the API refuses our credentials (401/403)", registry=r
        )
        self.endpoint_misconfigured = Gauge(
            f"{p}_endpoint_misconfigured",
            "1 while the Cohort Sync URL answers 3xx/404/405/421 (base_url or data_center wrong)",
            registry=r,
        )
        self.up = Gauge(f"{p}_up", "1 while the main loop is alive", registry=r)
        self._create_label_sets()

    def _budget_gauges(self) -> None:
        """The API budget as a scheduled resource: per window is per rate_window_seconds."""
        r, p = self.registry, PREFIX
        self.budget = Gauge(
            f"{p}_budget_per_minute",
            "The workspace's request budget per window (moengage.rate_limit_per_minute)",
            registry=r,
        )
        self.budget_share = Gauge(
            f"{p}_budget_share_per_minute",
            "This replica's share of the budget per window, after 429 back-off of the pacing",
            registry=r,
        )
        self.budget_tokens_used = Gauge(
            f"{p}_budget_tokens_used",
            "Request slots this replica holds in the current window",
            registry=r,
        )
        self.budget_tokens_available = Gauge(
            f"{p}_budget_tokens_available",
            "Requests this replica could start now (paced tokens and free slots)",
            registry=r,
        )
        self.effective_linger = Gauge(
            f"{p}_effective_linger_seconds",
            "How long a cohort/action stream now waits between sends: the linger, or the "
            "streams over the paced request rate when that is longer",
            registry=r,
        )
        self.budget_demand = Gauge(
            f"{p}_budget_demand_per_minute",
            "Requests per window the buffered cohort/action streams want at the configured "
            "linger (streams x window / linger)",
            registry=r,
        )
        self.budget_group_members = Gauge(
            f"{p}_budget_group_members",
            "Members sharing the workspace budget, as this replica sees them",
            registry=r,
        )
        self.budget_poll_failures = Counter(
            f"{p}_budget_poll_failures",
            "Failed reads of the consumer group's members and lag (the last share is kept)",
            registry=r,
        )

    def _create_label_sets(self) -> None:
        """Create every bounded label set up front so series exist (as 0) before the first event."""
        for action in ACTIONS:
            for status in STATUS_CLASSES:
                self.requests.labels(action, status)
            self.request_duration.labels(action)
            self.members_per_request.labels(action)
            self.request_body_bytes.labels(action)
            self.members_acknowledged.labels(action)
        for cause in RETRY_CAUSES:
            self.retries.labels(cause)
        for reason in DLQ_REASONS:
            self.invalid_events.labels(reason)
            self.dlq_writes.labels(reason)
        for cause in DLQ_FAILURE_CAUSES:
            self.dlq_failures.labels(cause)
        for kind in ("assign", "revoke", "lost"):
            self.rebalances.labels(kind)


class AgeHistogram(Collector):
    """A histogram of ages, fed a whole request body's counts at once.

    Histogram.observe() takes a lock and searches the buckets once per value; a body settles
    thousands of events, whose ages are counted per bucket in Rust (Members.ages).
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self.bounds = list(buckets)  # upper bounds in seconds, ascending
        self._counts = [0] * len(self.bounds)  # cumulative, like the exposition
        self._count = 0
        self._sum = 0.0
        self._lock = threading.Lock()  # collect() runs on the metrics server's thread
        registry.register(self)

    def observe(self, within: list[int], count: int, total: float) -> None:
        """Observe `count` ages summing to `total` seconds, within[i] of them at most bounds[i]."""
        with self._lock:
            for i, n in enumerate(within):
                self._counts[i] += n
            self._count += count
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            buckets = [(_le(b), c) for b, c in zip(self.bounds, self._counts, strict=True)]
            buckets.append(("+Inf", self._count))
            total = self._sum
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )


def status_class(status: int) -> str:
    """Map an HTTP status to the bounded `status_class` label ("other": 1xx, or not HTTP)."""
    if status in (400, 401, 403, 413, 429):
        return str(status)
    if 200 <= status < 600:
        return f"{status // 100}xx"
    return "other"
