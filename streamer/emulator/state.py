"""Segments and their membership, as Cohort Sync leaves them.

Choices where moengage-api.md §8 item 3 leaves the real behaviour open:
- a cohort is keyed by `cohort_id` alone; the first request for an unknown id (add or remove)
  creates its segment, named after that request's `cohort_name`; later names do not rename it;
- a segment created this way has type "COHORT_SYNC" and source "API" (the real type string is
  undocumented; "ELASTIC_SEARCH" belongs to filter segments, "FILE" is ours for file segments);
- an archived segment still accepts Cohort Sync changes (archiving hides, it does not freeze).
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .validation import CohortRequest

SEGMENT_TYPE = "COHORT_SYNC"
FILTER_TYPE = "ELASTIC_SEARCH"  # §5.1: filter segments
FILE_TYPE = "FILE"  # undocumented: our name for v2 file segments
SEGMENT_SOURCE = "API"

_object_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_process_bytes = os.urandom(5).hex()


def new_object_id() -> str:
    """24 hex digits laid out like a MongoDB ObjectId: time, per-process random, counter."""
    counter = next(_object_counter) & 0xFFFFFF
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{_process_bytes}{counter:06x}"


def now_iso() -> str:
    # The documented format: ISO-8601, no zone, microseconds ("2022-12-20T06:21:44.112000").
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass(slots=True)
class Segment:
    id: str
    name: str
    created_time: str
    updated_time: str
    type: str = SEGMENT_TYPE
    cohort_id: str | None = None  # Cohort Sync segments only
    partner: str | None = None
    description: str | None = None
    archived: bool = False
    members: set[str] = field(default_factory=set)
    included_filters: dict[str, Any] | None = None  # filter segments only
    definition_key: bytes | None = None  # canonical form of included_filters, for 409s

    def summary(self) -> dict[str, Any]:
        """The v3 list item (§5.4), plus `archived` so archive state is observable."""
        return {
            "name": self.name,
            "id": self.id,
            "created_time": self.created_time,
            "type": self.type,
            "source": SEGMENT_SOURCE,
            "archived": self.archived,
        }

    def detail(self) -> dict[str, Any]:
        """`GET /v3/custom-segments/{id}`'s item (§8.11, our reading): the list item, plus the
        segment object's fields (§5.1) a filter segment has, so a definition can be read back."""
        item = self.summary()
        if self.included_filters is not None:
            item["updated_time"] = self.updated_time
            item["description"] = self.description
            item["included_filters"] = self.included_filters
        return item

    def segment_object(self) -> dict[str, Any]:
        """The v3 segment object of create/update answers (§5.1)."""
        return {
            "name": self.name,
            "id": self.id,
            "created_time": self.created_time,
            "updated_time": self.updated_time,
            "type": self.type,
            "source": SEGMENT_SOURCE,
            "description": self.description,
            "included_filters": self.included_filters,
        }


class SegmentStore:
    def __init__(self) -> None:
        self._by_cohort: dict[str, Segment] = {}
        self._by_id: dict[str, Segment] = {}
        # names of file segments: Cohort Sync may not use them (checked on every request)
        self.file_names: set[str] = set()

    def clear(self) -> None:
        self._by_cohort.clear()
        self._by_id.clear()
        self.file_names.clear()

    def apply(self, request: CohortRequest) -> int:
        """Apply an accepted request; returns how many memberships actually changed."""
        segment = self._segment_for(request)
        members = segment.members
        before = len(members)
        if request.action == "add_members":
            members.update(request.uids)
        else:
            members.difference_update(request.uids)
        changed = abs(len(members) - before)
        if changed:
            segment.updated_time = now_iso()
        return changed

    def _segment_for(self, request: CohortRequest) -> Segment:
        segment = self._by_cohort.get(request.cohort_id)
        if segment is None:
            now = now_iso()
            segment = Segment(
                id=new_object_id(),
                cohort_id=request.cohort_id,
                name=request.cohort_name,
                partner=request.partner,
                description=request.cohort_description,
                created_time=now,
                updated_time=now,
            )
            self._by_cohort[request.cohort_id] = segment
            self._by_id[segment.id] = segment
        return segment

    def add(self, segment: Segment) -> None:
        """A segment created by the v3 or v2 API (Cohort Sync creates its own)."""
        self._by_id[segment.id] = segment
        if segment.type == FILE_TYPE:
            self.file_names.add(segment.name)

    def active_count(self) -> int:
        """Active segments of every type, for the 1,000 cap (§1.3)."""
        return sum(not s.archived for s in self._by_id.values())

    def by_definition(self, key: bytes) -> Segment | None:
        return next((s for s in self._by_id.values() if s.definition_key == key), None)

    def by_cohort(self, cohort_id: str) -> Segment | None:
        return self._by_cohort.get(cohort_id)

    def by_id(self, segment_id: str) -> Segment | None:
        return self._by_id.get(segment_id)

    def by_name(self, name: str) -> list[Segment]:
        """Segments with this exact name, oldest first (names are not unique across cohorts)."""
        return [s for s in self._by_id.values() if s.name == name]

    def segments(self) -> list[Segment]:
        return list(self._by_id.values())

    def cohorts_json(self) -> dict[str, dict[str, Any]]:
        """`GET /_emulator/cohorts`: every cohort with its segment and member count."""
        return {
            cohort_id: {
                "segment_id": s.id,
                "name": s.name,
                "partner": s.partner,
                "description": s.description,
                "archived": s.archived,
                "member_count": len(s.members),
                "created_time": s.created_time,
                "updated_time": s.updated_time,
            }
            for cohort_id, s in self._by_cohort.items()
        }
