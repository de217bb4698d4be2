"""streamer/pipeline.py's modes: the backlog flips LIVE/CATCHING_UP only while running; shutdown
moves to FLUSHING, then STOPPED, where a revoke drops what is held instead of waiting."""

from __future__ import annotations

import logging

import orjson
import pytest
from confluent_kafka import Message

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition
from streamer.pipeline import Mode, Pipeline

P0: TopicPartition = ("events", 0)


class NoLimiter:
    def has_capacity(self) -> bool:
        return False  # nothing is ever sent: what is ingested stays held


def pipeline() -> Pipeline:
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "dlq"},
            "moengage": {"base_url": "http://unused"},
            "deadlines": {"revoke_flush_seconds": 0.3},
        }
    )
    return Pipeline(settings, None, NoLimiter(), None, Metrics())  # type: ignore[arg-type]


def enter(offset: int) -> Message:
    value = orjson.dumps({"action": "enter", "cohort_id": "c", "uid": f"u{offset}", "ts": 1})
    return Message(topic="events", partition=0, offset=offset, value=value)


@pytest.mark.parametrize("behind", [True, False])
def test_the_backlog_decides_only_while_running(behind: bool) -> None:
    p = pipeline()
    assert p.mode is Mode.LIVE
    p.track_backlog(True)
    assert p.mode is Mode.CATCHING_UP and p.catching_up
    p.track_backlog(False)
    assert p.mode is Mode.LIVE
    p.start_flush()
    p.track_backlog(behind)
    assert p.mode is Mode.FLUSHING and not p.catching_up


@pytest.mark.parametrize("stopped", [True, False])
async def test_a_revoke_after_the_shutdown_drain_drops_instead_of_waiting(
    stopped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    p = pipeline()
    await p.assigned([P0])
    p.ingest([enter(0), enter(1)])
    if stopped:
        await p.stop()
        assert p.mode is Mode.STOPPED
    with caplog.at_level(logging.WARNING, logger="streamer.pipeline"):
        points = await p.revoking([P0])
    assert points == {P0: 0}  # nothing was applied: the next owner starts at offset 0
    assert p.buffered_events == 0 and p.tracker.assigned() == []
    # running, the revoke waits for its flush until the deadline; stopped, it never waits
    assert ("revoke deadline passed" in caplog.text) is not stopped
    await p.stop()
