"""Backpressure: which partitions to pause or resume, a pure function of the pipeline's state.

Consumption pauses while memory is the limit (above a high-water mark) or while the API cannot
be used at all (the gate is closed), and resumes below the low-water marks; or below the high
ones when the pipeline is stalled: nothing in flight and no full body anywhere, so waiting
frees no memory (more events may fill a body, while every request sent now would be partial).
Between the marks the current state holds (hysteresis), so the consumer does not flap.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Protocol

from streamer.config import BatchingConfig
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition

log = logging.getLogger(__name__)


class PipelineState(NamedTuple):
    """What the decision reads of the pipeline and the API gate."""

    buffered_events: int
    buffered_bytes: int
    stalled: bool  # nothing in flight and no full body held (Pipeline.stalled)
    api_blocked: bool  # the API gate is closed (401/403, a wrong URL)


class FlowChange(NamedTuple):
    """Partitions to pause and to resume now (at most one of the two is non-empty)."""

    pause: list[TopicPartition]
    resume: list[TopicPartition]


def above_high_water(events: int, nbytes: int, marks: BatchingConfig) -> bool:
    return events > marks.high_water_events or nbytes > marks.high_water_bytes


def below_low_water(events: int, nbytes: int, marks: BatchingConfig) -> bool:
    return events < marks.low_water_events and nbytes < marks.low_water_bytes


def should_pause(state: PipelineState, marks: BatchingConfig, paused_now: bool) -> bool:
    """Whether consumption should be paused, given whether it is paused now."""
    over = above_high_water(state.buffered_events, state.buffered_bytes, marks)
    if state.api_blocked or over:
        return True
    under = below_low_water(state.buffered_events, state.buffered_bytes, marks)
    return paused_now and not (under or state.stalled)


def flow_change(
    state: PipelineState,
    marks: BatchingConfig,
    assigned: set[TopicPartition],
    paused: set[TopicPartition],
) -> FlowChange:
    """What to pause or resume: every assigned partition goes one way. A paused partition that
    is no longer assigned needs neither (the caller forgets it)."""
    if should_pause(state, marks, bool(paused)):
        return FlowChange(sorted(assigned - paused), [])
    return FlowChange([], sorted(paused & assigned))


class Consumer(Protocol):
    """Pausing and resuming fetches (KafkaSource): False when librdkafka refused."""

    async def pause(self, partitions: list[TopicPartition]) -> bool: ...
    async def resume(self, partitions: list[TopicPartition]) -> bool: ...


class Throttle:
    """Applies flow_change() to the consumer and remembers what it paused. A refused pause or
    resume is tried again on the next loop (the decision is made afresh each time)."""

    def __init__(self, consumer: Consumer, marks: BatchingConfig, metrics: Metrics) -> None:
        self._consumer = consumer
        self._marks = marks
        self._metrics = metrics
        self.paused: set[TopicPartition] = set()

    async def apply(self, state: PipelineState, assigned: set[TopicPartition]) -> None:
        change = flow_change(state, self._marks, assigned, self.paused)
        if change.pause:
            if not self.paused:
                log.info(
                    "pausing consumption (buffered %d events, %d bytes, API unusable %s)",
                    state.buffered_events,
                    state.buffered_bytes,
                    state.api_blocked,
                )
            if await self._consumer.pause(change.pause):
                self.paused |= set(change.pause)
        if change.resume and await self._consumer.resume(change.resume):
            log.info("resuming consumption (buffered %d events)", state.buffered_events)
            self.paused -= set(change.resume)
        self.paused &= assigned  # a revoked partition is neither paused nor resumed
        self._metrics.paused_partitions.set(len(self.paused))
