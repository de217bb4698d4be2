"""Sealing: what one delivery takes out of a cohort's buffer, packed into request bodies.

Everything; or only the full bodies, when the last body of each action is left in the buffer
(with any action that does not fill one body yet) to be filled by later events; or, under
memory pressure, all of the action holding most. Each body
carries the entries it settles, so offsets are released body by body, never for an event whose
change the API has not accepted.
"""

from __future__ import annotations

from typing import NamedTuple

from streamer.batch import CohortBuffer, Entry, Take
from streamer.payload import Envelope, pack


class Parcel(NamedTuple):
    """One request body and the winning events it applies, aligned with its uids."""

    envelope: Envelope
    data: bytes
    uids: list[str]
    entries: list[Entry]


class Shipment:
    """What one delivery of a cohort sends; `done` counts parcels settled, in order."""

    __slots__ = ("cohort_id", "description", "done", "name", "parcels", "too_large")

    def __init__(
        self, buf: CohortBuffer, parcels: list[Parcel], too_large: list[tuple[str, Entry]]
    ) -> None:
        self.cohort_id = buf.cohort_id
        # the cohort's labels when sealed: a buffer its events are requeued to gets them back
        self.name = buf.name
        self.description = buf.description
        self.parcels = parcels
        self.too_large = too_large  # (uid, entry) alone over max_payload_bytes: to the DLQ
        self.done = 0

    def unsettled_by_uid(self) -> list[tuple[str, Entry]]:
        """(uid, entry) of every event not settled yet (a stopped delivery requeues them)."""
        pending = [
            pair for p in self.parcels[self.done :] for pair in zip(p.uids, p.entries, strict=True)
        ]
        return pending + self.too_large

    def unsettled(self) -> list[Entry]:
        return [entry for _uid, entry in self.unsettled_by_uid()]


def seal(buf: CohortBuffer, partner: str, max_bytes: int, take: Take) -> Shipment:
    """Take from `buf` what to send now; what stays is left in `buf`."""
    parcels: list[Parcel] = []
    too_large: list[tuple[str, Entry]] = []
    larger_is_add = buf.add_bytes >= buf.remove_bytes
    for action, add, held, est in (
        ("add_members", True, buf.adds, buf.add_bytes),
        ("remove_members", False, buf.removes, buf.remove_bytes),
    ):
        if not held or not _sent(take, est, max_bytes, larger_is_add is add):
            continue  # nothing of this action goes: it stays as it is, untouched
        uids = list(held)
        entries = list(held.values())
        envelope = Envelope(action, partner, buf.cohort_id, buf.name, buf.description)
        bodies, refused = pack(envelope, uids, max_bytes)
        if refused:  # rare: then bodies are not contiguous slices of uids
            too_large += [(uid, held[uid]) for uid in refused]
            pieces = [[held[uid] for uid in body.uids] for body in bodies]
        else:
            pieces = _slices(entries, [len(body.uids) for body in bodies])
        kept: dict[str, Entry] = {}
        if _keeps_last(take, len(bodies)):
            last, last_entries = bodies.pop(), pieces.pop()
            kept = dict(zip(last.uids, last_entries, strict=True))
        buf.keep(add, kept)
        parcels += [
            Parcel(envelope, body.data, body.uids, piece)
            for body, piece in zip(bodies, pieces, strict=True)
        ]
    return Shipment(buf, parcels, too_large)


def _sent(take: Take, est_bytes: int, max_bytes: int, larger: bool) -> bool:
    """Whether this action is (at least partly) sent: FULL_BODIES keeps the last body."""
    if take is Take.FULL_BODIES:
        return est_bytes >= max_bytes  # not one full body yet: all of it stays
    return take is Take.EVERYTHING or larger


def _keeps_last(take: Take, bodies: int) -> bool:
    """The last body is a remainder to keep filling; under memory pressure it goes too, unless
    it trails a full one (a body just over the limit would otherwise send a few members)."""
    if take is Take.FULL_BODIES:
        return bodies > 0
    return take is Take.LARGER_ACTION and bodies > 1


def _slices(entries: list[Entry], lengths: list[int]) -> list[list[Entry]]:
    out: list[list[Entry]] = []
    start = 0
    for length in lengths:
        out.append(entries[start : start + length])
        start += length
    return out
