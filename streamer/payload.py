"""Cohort Sync request bodies, packed close to the size limit and never over it.

The body is built from bytes: the envelope is serialized once with an empty member list and the
members are spliced in, so each body's exact size is known while packing. Plain uids (ASCII,
nothing JSON escapes) are the common case and are packed in bulk: their serialized size is their
length, so cut points come from prefix sums and a body is one join, not one encode per uid.
"""

from __future__ import annotations

import bisect
import itertools
import re
from typing import NamedTuple

import orjson

# what JSON (and orjson) escapes inside a string; a uid without any of these is written verbatim
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
_MEMBER_PLAIN = 10  # {"uid":""}: bytes around a plain uid


class Body(NamedTuple):
    data: bytes
    uids: list[str]


class Envelope:
    """The fixed part of a cohort's request for one action: everything but the members."""

    def __init__(
        self,
        action: str,
        partner: str,
        cohort_id: str,
        cohort_name: str,
        description: str | None,
    ) -> None:
        parameters: dict[str, object] = {"cohort_name": cohort_name, "cohort_id": cohort_id}
        if description:
            parameters["cohort_description"] = description
        parameters["members"] = []  # last key, so the body ends with  []}}
        whole = orjson.dumps({"action": action, "partner": partner, "parameters": parameters})
        self.head = whole[:-3]  # ... "members":[
        self.tail = whole[-3:]  # ]}}
        self.action = action

    @property
    def overhead(self) -> int:
        return len(self.head) + len(self.tail)

    def body(self, members: list[bytes]) -> bytes:
        return self.head + b",".join(members) + self.tail


def member_bytes(uid: str) -> bytes:
    return b'{"uid":' + orjson.dumps(uid) + b"}"


def pack(envelope: Envelope, uids: list[str], max_bytes: int) -> tuple[list[Body], list[str]]:
    """Split uids into bodies of at most max_bytes; also return uids that fit in none."""
    joined = "".join(uids)
    if joined.isascii() and not _ESCAPED.search(joined):
        longest = max(map(len, uids), default=0)
        if envelope.overhead + longest + _MEMBER_PLAIN <= max_bytes:
            return _pack_plain(envelope, uids, max_bytes), []
    return _pack_any(envelope, uids, max_bytes)


def _pack_plain(envelope: Envelope, uids: list[str], max_bytes: int) -> list[Body]:
    """pack() for uids whose JSON is themselves in quotes, each fitting a body on its own.

    Members uids[a:b] take ends[b] - ends[a] - 1 bytes, with ends[i] = sum of (len + 11) over
    the first i uids (member plus comma, less the last comma): the longest run that fits is
    one binary search.
    """
    ends = list(itertools.accumulate(map(len, uids), initial=0))
    room = max_bytes - envelope.overhead + 1  # + 1: the last member has no comma

    def end(i: int) -> int:
        return ends[i] + (_MEMBER_PLAIN + 1) * i

    bodies: list[Body] = []
    start, n = 0, len(uids)
    while start < n:
        stop = bisect.bisect_right(range(n + 1), end(start) + room, lo=start + 1, key=end) - 1
        chunk = uids[start:stop]
        members = ('{"uid":"' + '"},{"uid":"'.join(chunk) + '"}').encode()
        bodies.append(Body(envelope.head + members + envelope.tail, chunk))
        start = stop
    return bodies


def _pack_any(envelope: Envelope, uids: list[str], max_bytes: int) -> tuple[list[Body], list[str]]:
    """pack() for any uids: each member serialized and measured on its own bytes."""
    bodies: list[Body] = []
    too_large: list[str] = []
    members: list[bytes] = []
    chunk: list[str] = []
    size = envelope.overhead
    for uid in uids:
        member = member_bytes(uid)
        extra = len(member) + (1 if members else 0)
        if envelope.overhead + len(member) > max_bytes:
            too_large.append(uid)
            continue
        if size + extra > max_bytes:
            bodies.append(Body(envelope.body(members), chunk))
            members, chunk, size = [], [], envelope.overhead
            extra = len(member)
        members.append(member)
        chunk.append(uid)
        size += extra
    if members:
        bodies.append(Body(envelope.body(members), chunk))
    return bodies, too_large
