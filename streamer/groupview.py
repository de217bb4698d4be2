"""What the consumer group looks like from Kafka: its members and how far behind each one is.

Three admin requests per read (a fourth while some partition was never committed): the group's
description (members and their assignments), its committed offsets, and the end offsets of the
partitions the members own. A member's lag is the sum over its partitions of end minus
committed (a partition never committed counts from its earliest offset: what retention left,
where a new group starts reading). The lag is as stale as the commit interval
(`kafka.commit_interval_ms`): committed offsets are what every member can read, and a second of
staleness only delays a share by that second.

Every call blocks (network round trips), so `read()` runs on a thread of its own, never on the
event loop nor on the consumer's thread. The AdminClient is built like the replay's, with the
consumer's security settings, once, and kept: a collected client fails its futures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

# where OffsetSpec is defined: confluent_kafka.admin re-exports it, but not to type checkers
from confluent_kafka.admin._listoffsets import OffsetSpec

from streamer.config import KafkaConfig, connection_settings
from streamer.offsets import TopicPartition as TP
from streamer.source import RDKAFKA_LOG

# per admin request; a read makes up to four, so a broker that does not answer costs ~8 s
ADMIN_TIMEOUT_SECONDS = 2.0
# a member whose partitions' end offsets moved this recently has events flowing, even when its
# committed lag reads 0 between two commits
FLOWING_FOR_SECONDS = 30.0
# the end and the start of a partition; confluent-kafka leaves these unannotated
LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._timeout = timeout
        self._clock = clock
        self._admin: AdminClient | None = None
        self._ends: dict[TP, int] = {}  # each partition's end offset at the last read
        self._moved_at: dict[TP, float] = {}  # when it was last seen to move

    def read(self) -> GroupView:
        """One view of the group. Blocks; raises whatever the admin client raises."""
        admin = self._client()
        owned = self._assignments(admin)
        if owned is None:
            return GroupView({}, stable=False)
        partitions = {tp for tps in owned.values() for tp in tps}
        committed = self._committed(admin)
        ends = self._offsets(admin, partitions, LATEST)
        starts = {**self._offsets(admin, partitions - committed.keys(), EARLIEST), **committed}
        moved = self._moved(ends)
        lags: dict[str, int | None] = {}
        for member, tps in owned.items():
            behind = (max(0, ends[tp] - starts[tp]) for tp in tps)
            lags[member] = sum(behind) if tps else None
        flowing = frozenset(m for m, tps in owned.items() if moved & set(tps))
        return GroupView(lags, flowing)

    def _moved(self, ends: dict[TP, int]) -> set[TP]:
        """The partitions whose end moved within FLOWING_FOR_SECONDS (first sight: not yet)."""
        now = self._clock()
        for tp, end in ends.items():
            if tp in self._ends and self._ends[tp] != end:
                self._moved_at[tp] = now
        self._ends.update(ends)
        return {tp for tp, at in self._moved_at.items() if now - at <= FLOWING_FOR_SECONDS}

    def _client(self) -> AdminClient:
        if self._admin is None:
            settings: dict[str, Any] = {"bootstrap.servers": self._kafka.bootstrap_servers}
            settings["logger"] = RDKAFKA_LOG  # through Python logging, not raw to stderr
            self._admin = AdminClient({**settings, **connection_settings(self._kafka)})
        return self._admin

    def _assignments(self, admin: AdminClient) -> dict[str, list[TP]] | None:
        """Each member's partitions; None while the group is not stable (rebalancing)."""
        group = self._kafka.group_id
        futures = admin.describe_consumer_groups([group], request_timeout=self._timeout)
        description = futures[group].result(timeout=self._timeout)
        if description.members and description.state != ConsumerGroupState.STABLE:
            return None
        return {
            member.member_id: [
                (tp.topic, tp.partition) for tp in member.assignment.topic_partitions
            ]
            for member in description.members
        }

    def _committed(self, admin: AdminClient) -> dict[TP, int]:
        group = self._kafka.group_id
        request = [ConsumerGroupTopicPartitions(group)]  # no partitions named: all of them
        futures = admin.list_consumer_group_offsets(request, request_timeout=self._timeout)
        answer = futures[group].result(timeout=self._timeout)
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions or []
            if tp.error is None and tp.offset >= 0
        }

    def _offsets(self, admin: AdminClient, partitions: set[TP], spec: OffsetSpec) -> dict[TP, int]:
        if not partitions:
            return {}
        request = {TopicPartition(t, p): spec for t, p in partitions}
        futures = admin.list_offsets(request, request_timeout=self._timeout)
        return {
            (tp.topic, tp.partition): future.result(timeout=self._timeout).offset
            for tp, future in futures.items()
        }
