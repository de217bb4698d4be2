"""What the consumer group looks like from Kafka: its members and how far behind each one is.

A member's lag is the sum over its partitions of end minus committed (a partition never
committed counts from its earliest offset: what retention left, where a new group starts
reading). The lag is as stale as the commit interval (`kafka.commit_interval_ms`): committed
offsets are what every member can read, and a second of staleness only delays a share by that
second.

The facts come from an AdminClient in a child process (streamer.groupfetch): librdkafka can
abort the process that makes the group coordinator's requests when a connection drops, and
that must end a read, not the replica. `read()` blocks, so it runs on a thread of its own,
never on the event loop nor on the consumer's thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from streamer.config import KafkaConfig, connection_settings
from streamer.groupfetch import Answer, FetchSettings, GroupFacts
from streamer.isolated import IsolatedChild
from streamer.offsets import TopicPartition as TP

# per admin request; a read makes up to four, so a broker that does not answer costs ~8 s
ADMIN_TIMEOUT_SECONDS = 2.0
REQUESTS_PER_READ = 4
# a member whose partitions' end offsets moved this recently has events flowing, even when its
# committed lag reads 0 between two commits
FLOWING_FOR_SECONDS = 30.0


class GroupReadError(RuntimeError):
    """The admin client failed a read (its error, from the child, as text)."""


@dataclass(frozen=True)
class GroupView:
    """Each member's lag in events, by member id (None: it owns no partition); the members
    whose partitions received events in the last FLOWING_FOR_SECONDS; and whether the group
    was stable (while it rebalances, the coordinator lists members without their partitions)."""

    lags: dict[str, int | None]
    flowing: frozenset[str] = field(default_factory=frozenset)
    stable: bool = True


class GroupReader:
    def __init__(
        self,
        kafka: KafkaConfig,
        timeout: float = ADMIN_TIMEOUT_SECONDS,
    ) -> None:
        self._timeout = timeout
        client: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
        client.update(connection_settings(kafka))
        level = logging.getLogger().getEffectiveLevel()
        settings = FetchSettings(client, kafka.group_id, timeout, level)
        self._child = IsolatedChild("streamer.groupfetch", settings)
        self._ends: dict[TP, int] = {}  # each partition's end offset at the last read
        self._moved_at: dict[TP, float] = {}  # when it was last seen to move

    def read(self) -> GroupView:
        """One view of the group. Blocks; raises GroupReadError, TimeoutError, ChildDied."""
        answer = self._child.ask(None, self._timeout * REQUESTS_PER_READ + 1.0)
        assert isinstance(answer, Answer)
        for fields in answer.logs:  # through this process's handler: scrubbed, rate-limited
            record = logging.makeLogRecord(fields)
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        if answer.facts is None:
            raise GroupReadError(answer.error)
        return self._view(answer.facts)

    def close(self) -> None:
        self._child.close()

    @property
    def child_starts(self) -> int:
        """Children started so far: one, plus one after each crash or hang."""
        return self._child.starts

    def _view(self, facts: GroupFacts) -> GroupView:
        if facts.owned is None:
            return GroupView({}, stable=False)
        starts = {**facts.earliest, **facts.committed}
        moved = self._moved(facts.ends)
        lags: dict[str, int | None] = {}
        for member, tps in facts.owned.items():
            behind = (max(0, facts.ends[tp] - starts[tp]) for tp in tps)
            lags[member] = sum(behind) if tps else None
        flowing = frozenset(m for m, tps in facts.owned.items() if moved & set(tps))
        return GroupView(lags, flowing)

    def _moved(self, ends: dict[TP, int]) -> set[TP]:
        """The partitions whose end moved within FLOWING_FOR_SECONDS (first sight: not yet)."""
        now = time.monotonic()
        for tp, end in ends.items():
            if tp in self._ends and self._ends[tp] != end:
                self._moved_at[tp] = now
        self._ends.update(ends)
        return {tp for tp, at in self._moved_at.items() if now - at <= FLOWING_FOR_SECONDS}
