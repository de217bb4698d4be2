"""The Segments APIs' documented request limits (§3.2, §5.4-§5.7), stated once: the emulator
enforces them (emulator/quotas.py) and `segments apply` paces itself by them (segments/pacing.py).
"""

from __future__ import annotations

from typing import NamedTuple

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


class Quota(NamedTuple):
    limit: int
    seconds: float


# Shortest window first. v3 list and create: 50/min, 200/hour, 1,000/day; get by id:
# 100/min, 1,000/hour, 4,000/day. Update's rate is not documented (§8.13): it gets create's.
V3_LIST = (Quota(50, MINUTE), Quota(200, HOUR), Quota(1000, DAY))
V3_CREATE = V3_LIST
V3_UPDATE = V3_LIST
V3_GET = (Quota(100, MINUTE), Quota(1000, HOUR), Quota(4000, DAY))
# Archive/unarchive have no documented limit (§4): none is applied.
# v2 file operations (and v1 CSV creates, §6) share one budget; replace counts too (§8.6).
FILE_OPS = (Quota(10, HOUR), Quota(100, DAY))
