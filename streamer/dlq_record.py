"""What a dead letter looks like on the DLQ topic, cut to fit the topic's record limit.

The original key and value go out unchanged when they fit, with headers `reason` (one of
decode.REASONS), `detail`, and the source `topic`, `partition`, `offset`. A record the source
topic accepted can still be too large for the DLQ (the producer's `message.max.bytes`, the DLQ
topic's `max.message.bytes`, plus our headers): then a prefix of the key and of the value is
kept, so the whole record fits, and headers `truncated_key_from_bytes` /
`truncated_value_from_bytes` give the original sizes of what was cut. A null key or value
(a tombstone) stays null.
"""

from __future__ import annotations

from typing import NamedTuple

from streamer.batch import SourceMessage

# The framing around key, value and headers in a one-record batch (Kafka record format v2),
# at its widest: what the broker's max.message.bytes and librdkafka's message.max.bytes count.
BATCH_HEADER_BYTES = 61  # offset, length, epoch, magic, crc, attributes, ... record count
RECORD_FRAMING_BYTES = 36  # varint lengths and deltas (librdkafka's V2_MAX_OVERHEAD)
HEADER_FRAMING_BYTES = 10  # a header's key and value lengths, as varints
DETAIL_MAX_BYTES = 1000
# the headers take at most ~1.5 KB (a 1000-byte detail, a 249-character topic name): below
# this limit a dead letter would have no room left for the event itself
MIN_LIMIT_BYTES = 4096


class Origin(NamedTuple):
    """Where a dead letter came from, and its original key and value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def origin_of(msg: SourceMessage) -> Origin:
    return Origin(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())


Headers = list[tuple[str, bytes]]


class Record(NamedTuple):
    """One dead letter as produced: key, value and headers."""

    key: bytes | None
    value: bytes | None
    headers: Headers


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """The most bytes this record can take in a batch of its own."""
    framing = BATCH_HEADER_BYTES + RECORD_FRAMING_BYTES
    header_bytes = sum(len(name) + len(text) + HEADER_FRAMING_BYTES for name, text in headers)
    return framing + len(key or b"") + len(value or b"") + header_bytes


def bounded(origin: Origin, reason: str, detail: str, limit: int) -> Record:
    """The dead letter of `origin`, its key and value cut if needed so it takes <= `limit`."""
    headers: Headers = [
        ("reason", reason.encode()),
        ("detail", detail.encode("utf-8", "replace")[:DETAIL_MAX_BYTES]),
        ("topic", origin.topic.encode()),
        ("partition", str(origin.partition).encode()),
        ("offset", str(origin.offset).encode()),
    ]
    key, value = origin.key, origin.value
    if record_size(key, value, headers) <= limit:
        return Record(key, value, headers)
    key_bytes, value_bytes = len(key or b""), len(value or b"")
    marks: Headers = [
        ("truncated_key_from_bytes", str(key_bytes).encode()),
        ("truncated_value_from_bytes", str(value_bytes).encode()),
    ]
    room = max(0, limit - record_size(b"", b"", headers + marks))
    # the smaller part stays whole when it fits in half the room; the larger takes the rest
    keep_key = min(key_bytes, max(room // 2, room - value_bytes))
    keep_value = min(value_bytes, room - keep_key)
    if keep_key < key_bytes:
        headers.append(marks[0])
    if keep_value < value_bytes:
        headers.append(marks[1])
    return Record(_prefix(key, keep_key), _prefix(value, keep_value), headers)


def _prefix(data: bytes | None, size: int) -> bytes | None:
    return None if data is None else data[:size]
