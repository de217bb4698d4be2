"""`cohort-streamer replay`: re-sync by moving the consumer group's committed offsets.

Like kafka-consumer-groups --reset-offsets: a dry run prints the plan (the default), --execute
applies it, and either refuses while the group has live members, because a running streamer
would overwrite the new offsets with its own commits.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streamer.config import ConfigError, KafkaConfig, connection_settings, load_settings

EXIT_REFUSED = 4
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class PlannedReset:
    topic: str
    partition: int
    current: int | None  # None: the group never committed here
    new: int
    high: int

    @property
    def to_replay(self) -> int:
        return max(0, self.high - self.new)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the streamer's YAML config")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true", help="replay everything retained")
    target.add_argument("--to-latest", action="store_true", help="skip to the end")
    target.add_argument("--to-datetime", metavar="ISO8601", help="first offset at/after a time")
    target.add_argument("--to-offset", type=int, metavar="N", help="this offset (clamped)")
    target.add_argument("--shift-by", type=int, metavar="N", help="move by N (negative: back)")
    parser.add_argument("--topic", help="only this topic (default: every configured topic)")
    parser.add_argument("--partitions", help="only these partitions, e.g. 0,2")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan only (default)")
    mode.add_argument("--execute", action="store_true", help="apply the plan")


def run(args: argparse.Namespace) -> int:
    try:
        kafka = load_settings(args.config).kafka
        partitions = _parse_partitions(args.partitions)
        at_ms = _parse_datetime(args.to_datetime) if args.to_datetime else None
    except ConfigError as exc:
        print(f"cohort-streamer replay: {exc}", file=sys.stderr)
        return 2
    topics = [args.topic] if args.topic else list(kafka.topics)
    try:
        members = live_members(kafka)
        if members:
            print(
                f"cohort-streamer replay: group {kafka.group_id} has {members} live member(s); "
                "stop the streamer (scale the Deployment to 0) and try again",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        plan = make_plan(kafka, topics, partitions, args, at_ms)
        print(format_plan(plan))
        if args.execute:
            apply_plan(kafka, plan)
            print(f"applied: group {kafka.group_id} now starts from the offsets above")
        else:
            print("dry run: nothing changed (add --execute to apply)")
    except (KafkaException, ValueError, TimeoutError) as exc:
        print(f"cohort-streamer replay: {exc}", file=sys.stderr)
        return 1
    return 0


def _admin(kafka: KafkaConfig) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka.bootstrap_servers, **connection_settings(kafka)})


def live_members(kafka: KafkaConfig) -> int:
    admin = _admin(kafka)  # keep a reference: a collected client fails its futures
    futures = admin.describe_consumer_groups([kafka.group_id], request_timeout=20)
    description = futures[kafka.group_id].result(timeout=TIMEOUT_SECONDS)
    return len(description.members)


def make_plan(
    kafka: KafkaConfig,
    topics: list[str],
    only: set[int] | None,
    args: argparse.Namespace,
    at_ms: int | None,
) -> list[PlannedReset]:
    settings = {"bootstrap.servers": kafka.bootstrap_servers, "group.id": kafka.group_id}
    consumer = Consumer({**settings, **connection_settings(kafka)})  # never subscribes: reads only
    try:
        metadata = consumer.list_topics(timeout=TIMEOUT_SECONDS)
        tps: list[TopicPartition] = []
        for topic in topics:
            if topic not in metadata.topics:
                raise ValueError(f"topic {topic} does not exist")
            tps += [
                TopicPartition(topic, p)
                for p in sorted(metadata.topics[topic].partitions)
                if only is None or p in only
            ]
        if not tps:
            raise ValueError("no partition matches --partitions")
        committed = consumer.committed(tps, timeout=TIMEOUT_SECONDS)
        at_time: dict[tuple[str, int], int] = {}
        if at_ms is not None:
            found = consumer.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, at_ms) for tp in tps],
                timeout=TIMEOUT_SECONDS,
            )
            at_time = {(tp.topic, tp.partition): tp.offset for tp in found}
        plan = []
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_SECONDS)
            current = tp.offset if tp.offset >= 0 else None
            new = _target(args, current, low, high, at_time.get((tp.topic, tp.partition)))
            plan.append(PlannedReset(tp.topic, tp.partition, current, new, high))
        return plan
    finally:
        consumer.close()


def _target(
    args: argparse.Namespace, current: int | None, low: int, high: int, at_time: int | None
) -> int:
    if args.to_earliest:
        wanted = low
    elif args.to_latest:
        wanted = high
    elif args.to_datetime:
        wanted = high if at_time is None or at_time < 0 else at_time  # none after: the end
    elif args.to_offset is not None:
        wanted = args.to_offset
    else:
        wanted = (current if current is not None else low) + args.shift_by
    return min(max(wanted, low), high)


def format_plan(plan: list[PlannedReset]) -> str:
    rows = [("TOPIC", "PARTITION", "CURRENT", "NEW", "TO REPLAY")]
    for step in plan:
        current = "-" if step.current is None else str(step.current)
        rows.append((step.topic, str(step.partition), current, str(step.new), str(step.to_replay)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    total = sum(step.to_replay for step in plan)
    return "\n".join([*lines, f"total events to replay: {total}"])


def apply_plan(kafka: KafkaConfig, plan: list[PlannedReset]) -> None:
    offsets = [TopicPartition(s.topic, s.partition, s.new) for s in plan]
    request = [ConsumerGroupTopicPartitions(kafka.group_id, offsets)]
    admin = _admin(kafka)  # keep a reference: a collected client fails its futures
    futures = admin.alter_consumer_group_offsets(request, request_timeout=TIMEOUT_SECONDS)
    for future in futures.values():
        future.result(timeout=TIMEOUT_SECONDS)


def _parse_partitions(text: str | None) -> set[int] | None:
    if not text:
        return None
    try:
        return {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise ConfigError(f"--partitions {text!r}: expected numbers like 0,2") from None


def _parse_datetime(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--to-datetime {text!r}: not ISO-8601") from None
    if moment.tzinfo is None:
        raise ConfigError(f"--to-datetime {text!r}: add a timezone, e.g. Z or +02:00")
    return int(moment.timestamp() * 1000)
