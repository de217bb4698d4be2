"""The native boundary is one-way and each rule has one source (issue 16).

Python hands the extension plain data, its own types and its configuration; the extension never
imports a project module nor reads a Python object's attributes by name. The limits and name
rules it applies are the ones decode.py hands over, so changing them there changes both paths.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import orjson
import pytest

from streamer import decode, metrics
from streamer._fastpath import MEMBER_OVERHEAD, FastPath, cohort_name, event_time
from streamer.batch import CohortBuffer
from streamer.decode import parse_ts
from streamer.offsets import PendingRange
from streamer.payload import Envelope
from tests.fixtures.buffers import sealed

STREAMER = Path(decode.__file__).parent
CRATE_SOURCES = sorted((STREAMER / "fastpath" / "src").glob("*.rs"))


def test_the_stub_imports_no_project_module() -> None:
    tree = ast.parse((STREAMER / "_fastpath.pyi").read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert imported and not [m for m in imported if m and m.startswith("streamer")]


@pytest.mark.parametrize("source", CRATE_SOURCES, ids=lambda p: p.name)
def test_the_crate_reads_no_attribute_and_imports_no_module(source: Path) -> None:
    code = source.read_text()
    reaching_back = re.findall(r"\b(?:getattr|setattr|hasattr|import)\s*\(", code)
    assert not reaching_back, f"{source.name} reaches back into Python: {reaching_back}"


def native(**limits: object) -> FastPath:
    """The fast path with decode.py's limits, but for these."""
    events = decode.EventsConfig()
    fields = {
        "action": events.action_field,
        "cohort_id": events.cohort_id_field,
        "uid": events.uid_field,
        "name": events.cohort_name_field,
        "description": events.cohort_description_field,
        "ts": events.ts_field,
    }
    base = {
        "max_event_bytes": 65536,
        "max_id_chars": decode.MAX_ID_CHARS,
        "max_epoch_ms": decode.MAX_EPOCH_MS,
        "forbidden_name_start": decode.FORBIDDEN_NAME_START,
        "forbidden_name_chars": decode.FORBIDDEN_NAME_CHARS,
    }
    return FastPath(
        fields=fields,  # type: ignore[arg-type]
        enter_actions=events.enter_actions,
        exit_actions=events.exit_actions,
        limits={**base, **limits},  # type: ignore[typeddict-item]
        parse_ts=parse_ts,
    )


def event(**fields: object) -> bytes:
    return orjson.dumps({"action": "enter", "cohort_id": "c", "uid": "u", **fields})


@pytest.mark.parametrize(
    ("limits", "refused", "taken"),
    [
        ({"forbidden_name_chars": "#"}, event(cohort_name="a#b"), event(cohort_name="a|b")),
        ({"forbidden_name_start": "_"}, event(cohort_name="_a"), event(cohort_name=".a")),
        ({"max_id_chars": 3}, event(uid="abcd"), event(uid="abc")),
        ({"max_id_chars": 2}, event(cohort_id="abc"), event(cohort_id="ab")),
        ({"max_epoch_ms": 1000}, event(ts=1000), event(ts=999)),
        ({"max_event_bytes": len(event())}, event(uid="uu"), event()),
    ],
)
def test_the_native_rules_are_the_ones_handed_over(
    limits: dict[str, object], refused: bytes, taken: bytes
) -> None:
    fast = native(**limits)
    assert fast.decode(refused) is None  # not sure: the careful path decides
    assert fast.decode(taken) is not None


def test_decode_hands_over_its_own_rules() -> None:
    """A name decode.py refuses is never taken natively, and one it takes is."""
    fast = decode.Decoder(decode.EventsConfig(), 65536).fast_path
    for char in decode.FORBIDDEN_NAME_CHARS:
        assert fast.decode(event(cohort_name=f"a{char}b")) is None
    assert fast.decode(event(cohort_name=f"{decode.FORBIDDEN_NAME_START}a")) is None
    assert fast.decode(event(cohort_name="a.b-c_d")) is not None


def test_metrics_take_the_reasons_from_the_decoder() -> None:
    assert metrics.DLQ_REASONS is decode.REASONS


@pytest.mark.parametrize("uid", ["u", "user-0042", "x" * 300])
def test_member_overhead_is_what_the_body_writer_adds(uid: str) -> None:
    envelope = Envelope("add_members", "tests", "c-1", "Cohort", None)
    (one,), _ = sealed(envelope, ["a"], 10_000)
    (two,), _ = sealed(envelope, ["a", uid], 10_000)
    assert len(two.data) - len(one.data) == len(uid) + MEMBER_OVERHEAD


class Message:
    """What ingest reads of a confluent_kafka.Message: calls, as on the real one."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> None:
        return None

    def topic(self) -> str:
        return "events"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def test_native_ingest_needs_only_the_crate_types_and_plain_data() -> None:
    """The ingest loop takes a dict of buffers and settles superseded events through their
    range, with no Cohort or other Python object of ours in between."""
    values = [event(uid="u", ts=1), event(uid="v", ts=2), event(uid="u", action="exit", ts=3)]
    messages = [Message(value, offset) for offset, value in enumerate(values)]
    buf = CohortBuffer("c", 0.0)
    rng = PendingRange(("events", 0), 0, 0, len(messages))
    tally = native().ingest_run(messages, 0, None, 0, rng, {"c": buf})
    assert (tally.next, tally.last_offset, tally.superseded) == (3, 2, 1)
    assert tally.value_bytes == sum(map(len, values))
    assert tally.superseded_bytes == len(values[0])
    assert rng.pending == 2  # the superseded enter is settled; its winner is held
    assert {uid: e.add for uid, e in buf.entries.items()} == {"v": True, "u": False}


@pytest.mark.parametrize(("ts_ms", "expected"), [(None, 1_700_000_000_000), (0, 0), (5, 5)])
def test_an_event_without_its_own_time_is_timed_from_kafka(
    ts_ms: int | None, expected: int
) -> None:
    assert event_time(Message(b"{}", 0), ts_ms) == expected


@pytest.mark.parametrize(("name", "expected"), [(None, "c-1"), ("Named", "Named")])
def test_a_cohort_without_a_name_is_named_by_its_id_on_both_paths(
    name: str | None, expected: str
) -> None:
    assert cohort_name(name, "c-1") == expected
    value = event(cohort_id="c-1", **({} if name is None else {"cohort_name": name}))
    decoder = decode.Decoder(decode.EventsConfig(), 65536)
    careful, native_change = decoder._careful(value), decoder.fast_path.decode(value)
    assert isinstance(careful, decode.Change) and native_change is not None
    assert careful.cohort_name == native_change.cohort_name == expected
