# The per-event path in Rust (streamer/fastpath/src): see streamer/fastpath/README.md.
from collections.abc import Callable
from typing import Any

from streamer.batch import Cohort, CohortBuffer, Entry
from streamer.decode import ChangeFields
from streamer.offsets import PendingRange

MEMBER_OVERHEAD: int

class FastPath:
    def __init__(
        self,
        fields: tuple[str, str, str, str, str, str],
        enter_actions: list[str],
        exit_actions: list[str],
        max_event_bytes: int,
        parse_ts: Callable[[Any], object],
    ) -> None: ...
    def decode(self, value: bytes) -> ChangeFields | None: ...
    def ingest_run(
        self,
        messages: list[Any],
        start: int,
        topic: str | None,
        partition: int,
        rng: PendingRange,
        cohorts: dict[str, Cohort],
    ) -> tuple[int, int, int, int, int]: ...

def put(buf: CohortBuffer, uid: str, entry: Entry) -> Entry | None: ...
def settle(entries: list[Entry]) -> int: ...
def pack_plain(
    head: bytes, tail: bytes, uids: list[str], max_bytes: int
) -> list[tuple[bytes, int]] | None: ...
