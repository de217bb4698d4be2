"""The consumer group's raw facts, read with an AdminClient in a child process.

Run as `python -m streamer.groupfetch` by GroupReader, through streamer.isolated: two of these
requests (describe the group, list its committed offsets) go to the group coordinator, and
librdkafka can abort the process that makes them when the coordinator's connection drops. Here
that ends this child, not the service.

Three admin requests per read (a fourth while some partition was never committed): the group's
description (members and their assignments), its committed offsets, and the end offsets of the
partitions the members own, plus the earliest offsets of those never committed.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

# where OffsetSpec is defined: confluent_kafka.admin re-exports it, but not to type checkers
from confluent_kafka.admin._listoffsets import OffsetSpec

from streamer.isolated import serve_stdio
from streamer.logs import RDKAFKA_LOG
from streamer.offsets import TopicPartition as TP

# the end and the start of a partition; confluent-kafka leaves these unannotated
LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]


# what a log record keeps on its way to the parent (the message is formatted first)
RELAYED_FIELDS = (
    *("name", "levelno", "levelname", "created"),
    *("pathname", "filename", "module", "funcName", "lineno"),
)


@dataclass(frozen=True)
class FetchSettings:
    client: dict[str, Any] = field(repr=False)  # the AdminClient's settings (TLS, SASL)
    group: str
    timeout: float  # per admin request
    log_level: int  # the parent's: the child's lines are logged again there


@dataclass(frozen=True)
class GroupFacts:
    """Each member's partitions (None: the group is rebalancing, its description lists members
    without them), the committed offsets, and the end and earliest offsets of those partitions
    (earliest only for partitions never committed)."""

    owned: dict[str, list[TP]] | None
    committed: dict[TP, int]
    ends: dict[TP, int]
    earliest: dict[TP, int]


@dataclass(frozen=True)
class Answer:
    """One read's outcome (the facts, or what the admin client raised) and the child's log
    records meanwhile (logging.makeLogRecord's attributes, the message formatted)."""

    facts: GroupFacts | None
    error: str | None
    logs: list[dict[str, Any]]


def fetch(admin: AdminClient, group: str, timeout: float) -> GroupFacts:
    """One read. Blocks; raises whatever the admin client raises."""
    owned = _assignments(admin, group, timeout)
    if owned is None:
        return GroupFacts(None, {}, {}, {})
    partitions = {tp for tps in owned.values() for tp in tps}
    committed = _committed(admin, group, timeout)
    ends = _offsets(admin, partitions, LATEST, timeout)
    earliest = _offsets(admin, partitions - committed.keys(), EARLIEST, timeout)
    return GroupFacts(owned, committed, ends, earliest)


def _assignments(admin: AdminClient, group: str, timeout: float) -> dict[str, list[TP]] | None:
    """Each member's partitions; None while the group is not stable (rebalancing)."""
    futures = admin.describe_consumer_groups([group], request_timeout=timeout)
    description = futures[group].result(timeout=timeout)
    if description.members and description.state != ConsumerGroupState.STABLE:
        return None
    return {
        member.member_id: [(tp.topic, tp.partition) for tp in member.assignment.topic_partitions]
        for member in description.members
    }


def _committed(admin: AdminClient, group: str, timeout: float) -> dict[TP, int]:
    request = [ConsumerGroupTopicPartitions(group)]  # no partitions named: all of them
    futures = admin.list_consumer_group_offsets(request, request_timeout=timeout)
    answer = futures[group].result(timeout=timeout)
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in answer.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def _offsets(
    admin: AdminClient, partitions: set[TP], spec: OffsetSpec, timeout: float
) -> dict[TP, int]:
    if not partitions:
        return {}
    request = {TopicPartition(t, p): spec for t, p in partitions}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {
        (tp.topic, tp.partition): future.result(timeout=timeout).offset
        for tp, future in futures.items()
    }


class _Kept(logging.Handler):
    """Keeps this child's log records until the next answer carries them to the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # the record's own source and time: the parent's repeat limiter keys on the source
        kept = {key: getattr(record, key) for key in RELAYED_FIELDS}
        kept["msg"] = record.getMessage()
        self.records.append(kept)

    def take(self) -> list[dict[str, Any]]:
        records, self.records = self.records, []
        return records


def main() -> None:
    # an abort (librdkafka #4605) is expected here now and then: no core file for each
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    settings, questions, answers = serve_stdio()
    assert isinstance(settings, FetchSettings)
    kept = _Kept()
    logging.getLogger().addHandler(kept)
    logging.getLogger().setLevel(settings.log_level)
    client: dict[str, Any] = {**settings.client, "logger": RDKAFKA_LOG}  # to the parent's log
    admin = AdminClient(client)
    while True:
        try:
            questions.recv()
        except EOFError:  # the parent has gone
            return
        facts, error = None, None
        try:
            facts = fetch(admin, settings.group, settings.timeout)
        except Exception as exc:  # the parent counts it as a failed read
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        admin.poll(0)  # serves librdkafka's queued log lines to the logger
        answers.send(Answer(facts, error, kept.take()))


if __name__ == "__main__":
    # run from the module under its own name: what is pickled must name streamer.groupfetch's
    # classes, not __main__'s
    from streamer import groupfetch

    groupfetch.main()
