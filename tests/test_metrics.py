"""streamer/metrics.py: the bulk age histogram (ages counted by Members.ages in Rust) exposes
what prometheus_client's would; every HTTP status maps to a declared status_class label."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streamer._fastpath import Members
from streamer.batch import CohortBuffer, Entry
from streamer.metrics import STATUS_CLASSES, AgeHistogram, status_class
from streamer.offsets import PendingRange

BUCKETS = (0.05, 0.1, 1, 2.5, 60, 3600)
NOW_MS = 1_800_000_000_000


def members_timed(stamps_ms: list[int]) -> Members:
    """A body's members with these event times."""
    buf = CohortBuffer("c", 0.0)
    rng = PendingRange(("t", 0), 0, len(stamps_ms), len(stamps_ms))
    for i, ts in enumerate(stamps_ms):
        buf.put(f"u{i}", Entry(add=True, value=b"{}", key=None, offset=i, ts_ms=ts, range=rng))
    [(_data, members)], refused = buf.adds.seal(b"", b"", 10**9, 0)
    assert refused is None
    return members


def exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("age_seconds") and "_created" not in line
    ]


@given(
    st.lists(
        st.lists(
            st.integers(-5_000, 4_000_000) | st.sampled_from([0, 50, 100, 1000, 2500, 60_000]),
            max_size=50,
        ),
        max_size=5,
    )
)
@settings(max_examples=200, deadline=None)
def test_same_buckets_count_and_sum_as_observing_one_by_one(bodies: list[list[int]]) -> None:
    """Ages in ms before now (negative: a clock ahead of ours), bucket edges included."""
    ours, reference = CollectorRegistry(), CollectorRegistry()
    bulk = AgeHistogram("age_seconds", "age", BUCKETS, ours)
    single = Histogram("age_seconds", "age", buckets=BUCKETS, registry=reference)
    for ages in bodies:
        if ages:
            members = members_timed([NOW_MS - age for age in ages])
            bulk.observe(*members.ages(NOW_MS, bulk.bounds))
        for age in ages:
            single.observe(max(0, age) / 1000)
    mine, theirs = exposition(ours), exposition(reference)
    assert [line for line in mine if "_sum" not in line] == [
        line for line in theirs if "_sum" not in line
    ]
    total = next(float(line.split()[1]) for line in mine if line.startswith("age_seconds_sum"))
    expected = next(float(line.split()[1]) for line in theirs if "_sum" in line)
    assert abs(total - expected) < 1e-6 * max(1.0, expected)


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (301, "3xx"),
        (304, "3xx"),
        (399, "3xx"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "4xx"),
        (413, "413"),
        (429, "429"),
        (500, "5xx"),
        (599, "5xx"),
        (101, "other"),
        (99, "other"),
        (600, "other"),
        (999, "other"),
    ],
)
def test_status_class_names_every_status_with_a_declared_label(status: int, label: str) -> None:
    assert status_class(status) == label
    assert label in STATUS_CLASSES
