"""streamer/backpressure.py: when consumption pauses and resumes (no Kafka: a fake consumer)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.backpressure import FlowChange, PipelineState, Throttle, flow_change
from streamer.config import BatchingConfig
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition

MARKS = BatchingConfig(
    high_water_events=1000, low_water_events=500, high_water_bytes=10_000, low_water_bytes=5_000
)
P: list[TopicPartition] = [("events", n) for n in range(4)]
ALL = set(P)


def state(
    events: int = 0, nbytes: int = 0, stalled: bool = False, blocked: bool = False
) -> PipelineState:
    return PipelineState(events, nbytes, stalled, blocked)


# (state, paused before) -> expected: True pause every assigned one, False resume, None no change
CASES = [
    (state(1001), set(), True),  # over the event mark
    (state(10, 10_001), set(), True),  # over the byte mark
    (state(1001, stalled=True), set(), True),  # over: stalled or not
    (state(0, blocked=True), set(), True),  # the API cannot be used
    (state(0, blocked=True), ALL, None),  # ... and all are paused already
    (state(700), set(), None),  # between the marks, running: keeps running
    (state(700), ALL, None),  # between the marks, paused: stays paused
    (state(700, stalled=True), ALL, False),  # ... unless waiting frees nothing
    (state(499, 4_999), ALL, False),  # under both low marks
    (state(499, 5_000), ALL, None),  # under one low mark only
    (state(1000, 10_000), set(), None),  # at the high marks is not over them
    (state(0), set(), None),
]


@pytest.mark.parametrize(("s", "paused", "expected"), CASES)
def test_flow_change(s: PipelineState, paused: set[TopicPartition], expected: bool | None) -> None:
    change = flow_change(s, MARKS, ALL, paused)
    if expected is True:
        assert change == FlowChange(sorted(ALL - paused), [])
    elif expected is False:
        assert change == FlowChange([], sorted(paused))
    else:
        assert change == FlowChange([], [])


def test_a_partly_paused_assignment_pauses_only_the_rest() -> None:
    change = flow_change(state(2000), MARKS, ALL, {P[0], P[2]})
    assert change == FlowChange([P[1], P[3]], [])


def test_resume_skips_partitions_no_longer_assigned() -> None:
    change = flow_change(state(0), MARKS, {P[0]}, {P[0], P[1]})
    assert change == FlowChange([], [P[0]])


@given(
    events=st.integers(0, 3000),
    nbytes=st.integers(0, 30_000),
    stalled=st.booleans(),
    blocked=st.booleans(),
    paused=st.sets(st.sampled_from(P)),
)
@settings(max_examples=300, deadline=None)
def test_flow_change_property(
    events: int, nbytes: int, stalled: bool, blocked: bool, paused: set[TopicPartition]
) -> None:
    change = flow_change(state(events, nbytes, stalled, blocked), MARKS, ALL, paused)
    over = events > 1000 or nbytes > 10_000
    under = events < 500 and nbytes < 5_000
    assert not (change.pause and change.resume)
    assert set(change.pause) <= ALL - paused and set(change.resume) <= paused
    if blocked or over:  # memory or the API is the limit: everything pauses
        assert set(change.pause) == ALL - paused and change.resume == []
    elif under or stalled:  # nothing to gain by waiting: everything resumes
        assert change.pause == [] and set(change.resume) == paused
    elif paused:  # between the marks, paused: stays paused (a partition assigned since too)
        assert set(change.pause) == ALL - paused and change.resume == []
    else:  # between the marks, running: keeps running
        assert change == FlowChange([], [])


class FakeConsumer:
    def __init__(self) -> None:
        self.refuse = False
        self.calls: list[tuple[str, list[TopicPartition]]] = []

    async def pause(self, partitions: list[TopicPartition]) -> bool:
        self.calls.append(("pause", partitions))
        return not self.refuse

    async def resume(self, partitions: list[TopicPartition]) -> bool:
        self.calls.append(("resume", partitions))
        return not self.refuse


def paused_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("cohort_streamer_paused_partitions")


async def test_throttle_pauses_resumes_and_retries_what_librdkafka_refused() -> None:
    consumer, metrics = FakeConsumer(), Metrics()
    throttle = Throttle(consumer, MARKS, metrics)
    consumer.refuse = True
    await throttle.apply(state(5000), ALL)
    assert throttle.paused == set() and paused_gauge(metrics) == 0
    consumer.refuse = False
    await throttle.apply(state(5000), ALL)  # tried again: the decision is made afresh
    assert throttle.paused == ALL and paused_gauge(metrics) == 4
    await throttle.apply(state(700), ALL)  # between the marks: no call at all
    assert len(consumer.calls) == 2
    await throttle.apply(state(700), {P[0], P[1]})  # two revoked meanwhile: forgotten
    assert throttle.paused == {P[0], P[1]} and paused_gauge(metrics) == 2
    await throttle.apply(state(0), {P[0], P[1]})
    assert consumer.calls[-1] == ("resume", [P[0], P[1]])
    assert throttle.paused == set() and paused_gauge(metrics) == 0
