"""Cohort Sync request bodies, packed close to the size limit and never over it.

The body is built from bytes: the envelope is serialized once with an empty member list and the
members are spliced in, so each body's exact size is known while packing. The members are
written in Rust (streamer/fastpath/src/body.rs), escaped exactly as orjson escapes them.
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


def pack(envelope: Envelope, uids: list[str], max_bytes: int) -> tuple[list[Body], list[str]]:
    """Split uids into bodies of at most max_bytes, in order; also return uids that fit in none.
    (The packer of every sealed buffer, in Rust: streamer/fastpath/src/body.rs.)"""
    bodies, too_large = _fastpath.pack(envelope.head, envelope.tail, uids, max_bytes)
    packed = [Body(data, [uids[i] for i in carried]) for data, carried in bodies]
    return packed, [uids[i] for i in too_large]
