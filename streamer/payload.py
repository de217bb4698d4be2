"""Cohort Sync request bodies, packed close to the size limit and never over it.

The body is built from bytes: the envelope is serialized once with an empty member list and the
members are spliced in, so each body's exact size is known while packing. Plain uids (ASCII,
nothing JSON escapes) are the common case: their member is the uid in fixed quotes, so they are
packed in one pass over their bytes in Rust (streamer/fastpath/src/body.rs); any other uid is
serialized by orjson and measured on its own.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from streamer import _fastpath


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
    plain = _fastpath.pack_plain(envelope.head, envelope.tail, uids, max_bytes)
    if plain is None:
        return _pack_any(envelope, uids, max_bytes)
    bodies: list[Body] = []
    start = 0
    for data, count in plain:
        bodies.append(Body(data, uids[start : start + count]))
        start += count
    return bodies, []


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
