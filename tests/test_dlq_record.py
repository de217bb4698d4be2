"""The bounded form of a dead letter (issue 13, item 3): any record fits the DLQ's limit.

Whatever the sizes of key and value (null included) and the limit, the record produced takes at
most the limit; key and value are prefixes of the originals, cut only when the whole does not
fit; every cut is named in a header with the original size; a null stays null.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.dlq_record import MIN_LIMIT_BYTES, Origin, Record, bounded, record_size

PATTERN = bytes(range(256))


def _data(size: int | None, seed: int = 0) -> bytes | None:
    """`size` bytes that differ along their length, so a prefix check means something."""
    if size is None:
        return None
    return (PATTERN[seed % 256 :] + PATTERN * (size // 256 + 1))[:size]


def _letter(key: bytes | None, value: bytes | None, limit: int, detail: str = "x") -> Record:
    return bounded(Origin("events", 3, 12345, key, value), "event_too_large", detail, limit)


def _assert_bounded(record: Record, key: bytes | None, value: bytes | None, limit: int) -> None:
    headers = dict(record.headers)
    assert record_size(*record) <= limit
    for part, original, kept in (("key", key, record.key), ("value", value, record.value)):
        mark = headers.get(f"truncated_{part}_from_bytes")
        if original is None:
            assert kept is None and mark is None
            continue
        assert kept is not None and original.startswith(kept)
        assert mark == (str(len(original)).encode() if len(kept) < len(original) else None)
    assert headers["reason"] == b"event_too_large"
    assert (headers["topic"], headers["partition"], headers["offset"]) == (
        b"events",
        b"3",
        b"12345",
    )


sizes = st.one_of(st.none(), st.integers(0, 30_000))


@settings(max_examples=300, deadline=None)
@given(
    key_size=sizes,
    value_size=sizes,
    limit=st.integers(MIN_LIMIT_BYTES, 40_000),
    detail=st.text(max_size=1_500),
)
def test_any_record_fits_any_limit(
    key_size: int | None, value_size: int | None, limit: int, detail: str
) -> None:
    key, value = _data(key_size, 1), _data(value_size, 2)
    record = _letter(key, value, limit, detail)
    _assert_bounded(record, key, value, limit)
    uncut = _letter(key, value, 10**9, detail)
    if record_size(*uncut) <= limit:
        assert record == uncut, "a record that fits was changed"
    else:  # cut only as much as needed: the record fills the limit but for the spare marks
        assert record_size(*record) > limit - 80


LIMIT = 1_000_000  # librdkafka's default message.max.bytes


@pytest.mark.parametrize(
    ("key_size", "value_size", "key_kept", "value_kept"),
    [
        (150_000, 880_000, True, False),  # the record: the small key stays whole
        (1_040_000, 9, False, True),  # a big key alone
        (9, 1_040_000, True, False),  # a big value alone
        (2_000_000, 2_000_000, False, False),  # both: half the room each
        (None, 1_040_000, True, False),  # no key
        (1_040_000, None, False, True),  # a tombstone with a big key stays a tombstone
    ],
)
def test_the_larger_part_is_cut_first(
    key_size: int | None, value_size: int | None, key_kept: bool, value_kept: bool
) -> None:
    key, value = _data(key_size), _data(value_size)
    record = _letter(key, value, LIMIT)
    _assert_bounded(record, key, value, LIMIT)
    assert (record.key == key) is key_kept and (record.value == value) is value_kept
    assert record_size(*record) > LIMIT - 80


def test_just_below_and_just_above_the_limit() -> None:
    fits = _letter(b"k", b"", LIMIT)
    room = LIMIT - record_size(*fits)  # what a value may take with these headers
    value = _data(room)
    assert _letter(b"k", value, LIMIT) == _letter(b"k", value, 10**9)
    over = _data(room + 1)
    record = _letter(b"k", over, LIMIT)
    _assert_bounded(record, b"k", over, LIMIT)
    assert record.key == b"k" and record.value is not None and len(record.value) < room
