"""/healthz and /readyz answers: is the main loop alive, and can this replica do its work."""

from __future__ import annotations

import time

from streamer.dlq import DeadLetterWriter
from streamer.gate import ApiGate
from streamer.offsets import OffsetTracker
from streamer.source import KafkaSource

# the main loop returns from consume() at least every 0.1 s; this long without it is a hang
STALE_LOOP_SECONDS = 30.0


class Probes:
    def __init__(
        self, gate: ApiGate, source: KafkaSource, dlq: DeadLetterWriter, tracker: OffsetTracker
    ) -> None:
        self._gate = gate
        self._source = source
        self._dlq = dlq
        self._tracker = tracker
        self._heartbeat = time.monotonic()

    def beat(self) -> None:
        """The main loop ran."""
        self._heartbeat = time.monotonic()

    def alive(self) -> tuple[bool, str]:
        stale = time.monotonic() - self._heartbeat
        if stale > STALE_LOOP_SECONDS:
            return False, f"main loop has not run for {stale:.0f}s"
        return True, "main loop running"

    def ready(self) -> tuple[bool, str]:
        if self._gate.reason is not None:
            return False, self._gate.reason
        if not self._source.reachable:
            return False, "Kafka brokers unreachable"
        if not self._source.assignment_received:
            return False, "waiting for a partition assignment"
        dead_letters = self._dlq.problem()
        if dead_letters is not None:
            return False, dead_letters
        return True, f"{len(self._tracker.assigned())} partition(s) assigned"
