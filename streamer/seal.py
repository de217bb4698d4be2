"""Sealing: what one delivery takes out of a cohort's buffer, packed into request bodies.

Everything; or only the full bodies, when the last body of each action is left in the buffer
(with any action that does not fill one body yet) to be filled by later events; or, under
memory pressure, all of the action holding most. Each body carries the events it settles
(`Members`, Rust data), so offsets are released body by body, never for an event whose change
the API has not accepted.
"""

from __future__ import annotations

from typing import NamedTuple

from streamer._fastpath import Members
from streamer.batch import CohortBuffer, Take
from streamer.offsets import TopicPartition
from streamer.payload import Envelope


class Parcel(NamedTuple):
    """One request body and the winning events it applies."""

    envelope: Envelope
    data: bytes
    members: Members


class Shipment:
    """What one delivery of a cohort sends; `done` counts parcels settled, in order."""

    __slots__ = ("cohort_id", "description", "done", "name", "parcels", "too_large")

    def __init__(self, buf: CohortBuffer, parcels: list[Parcel], too_large: list[Members]) -> None:
        self.cohort_id = buf.cohort_id
        # the cohort's labels when sealed: a buffer its events are requeued to gets them back
        self.name = buf.name
        self.description = buf.description
        self.parcels = parcels
        self.too_large = too_large  # members alone over max_payload_bytes: to the DLQ
        self.done = 0

    def unsettled(self) -> list[Members]:
        """The events not settled yet (a stopped delivery requeues them)."""
        return [p.members for p in self.parcels[self.done :]] + self.too_large

    def holds_any(self, partitions: set[TopicPartition]) -> bool:
        return any(members.holds_any(partitions) for members in self.unsettled())


def seal(buf: CohortBuffer, partner: str, max_bytes: int, take: Take) -> Shipment:
    """Take from `buf` what to send now; what stays is left in `buf`."""
    parcels: list[Parcel] = []
    too_large: list[Members] = []
    larger_is_add = buf.add_bytes >= buf.remove_bytes
    for action, add, est_bytes in (
        ("add_members", True, buf.add_bytes),
        ("remove_members", False, buf.remove_bytes),
    ):
        if not est_bytes or not _sent(take, est_bytes, max_bytes, larger_is_add is add):
            continue  # nothing of this action goes: it stays as it is, untouched
        held = buf.adds if add else buf.removes  # read only now: an action never seen stays unmade
        envelope = Envelope(action, partner, buf.cohort_id, buf.name, buf.description)
        bodies, refused = held.seal(envelope.head, envelope.tail, max_bytes, _keep_last_from(take))
        if refused is not None:
            too_large.append(refused)
        parcels += [Parcel(envelope, data, members) for data, members in bodies]
    return Shipment(buf, parcels, too_large)


def _sent(take: Take, est_bytes: int, max_bytes: int, larger: bool) -> bool:
    """Whether this action is (at least partly) sent: FULL_BODIES keeps the last body."""
    if take is Take.FULL_BODIES:
        return est_bytes >= max_bytes  # not one full body yet: all of it stays
    return take is Take.EVERYTHING or larger


def _keep_last_from(take: Take) -> int:
    """From how many bodies on the last one stays held (0: never). It is a remainder to keep
    filling; under memory pressure it goes too, unless it trails a full one (a body just over
    the limit would otherwise send a few members)."""
    if take is Take.FULL_BODIES:
        return 1
    return 2 if take is Take.LARGER_ACTION else 0
