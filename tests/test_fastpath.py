"""streamer/fastpath (Rust): the per-event path must agree with the careful Python rules.

Two differential properties: the native decoder either steps aside or reads an event exactly as
decode.py's careful path does; and a pipeline whose ingest runs natively ends in the same state
(buffers, estimates, names, offsets, counts, dead letters) as one that takes every message the
careful Python way.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.batch import CohortBuffer, Take
from streamer.config import EventsConfig, Settings
from streamer.decode import MAX_EPOCH_MS, MAX_ID_CHARS, Decoder, Rejection, fast_path
from streamer.dlq import Done, Origin
from streamer.metrics import Metrics
from streamer.pipeline import Pipeline
from streamer.seal import seal
from tests.fixtures.buffers import FakeMessage as Msg

SCHEMAS = [
    EventsConfig(),
    EventsConfig(
        action_field="type",
        cohort_id_field="segment",
        cohort_name_field="label",
        cohort_description_field="about",
        uid_field="user",
        ts_field="at",
        enter_actions=["in", "joined"],
        exit_actions=["out"],
    ),
]

# strings that probe the edges: blanks by Python's rules (\x1c-\x1f, \x85, \u3000 ...), escapes,
# forbidden name characters, a leading dot, astral characters, length limits
tricky_text = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u3000\u200b", max_size=4),
    st.sampled_from(["", " ", ".x", "a|b", 'q"t', "a\\b", "é", "😀", "c-1", "Cohort 1", "u 1"]),
    st.builds(lambda n, c: c * n, st.sampled_from([1023, 1024, 1025]), st.sampled_from("aé😀")),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, MAX_EPOCH_MS - 1, MAX_EPOCH_MS, 2**64 - 1, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.5, -0.0, 1e13, 1e14, 1.7e12]),
    tricky_text,
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00", "2024-01-01 05:30+05:30"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=2), max_leaves=4)


@st.composite
def raw_events(draw: st.DrawFn, schema: EventsConfig) -> bytes:
    """JSON text of an event-like object: the schema's fields (sometimes missing, twice, or
    with an escaped key), plausible or hostile values, unknown keys, ASCII or raw UTF-8."""
    actions = [*schema.enter_actions, *schema.exit_actions, "ENTER", "", "other"]
    fields = {
        schema.action_field: st.one_of(st.sampled_from(actions), values),
        schema.cohort_id_field: st.one_of(
            st.sampled_from(["c-1", "c 2", "ç"]), tricky_text, values
        ),
        schema.uid_field: st.one_of(st.sampled_from(["u1", "u 2", "ü"]), tricky_text, values),
        schema.cohort_name_field: st.one_of(tricky_text, values),
        schema.cohort_description_field: st.one_of(tricky_text, values),
        schema.ts_field: values,
        "extra": values,
    }
    pairs: list[tuple[str, Any]] = []
    for key, strategy in fields.items():
        copies = draw(st.sampled_from([0, 1, 1, 1, 1, 2]))
        pairs += [(key, draw(strategy)) for _ in range(copies)]
    pairs = draw(st.permutations(pairs))
    ascii_only = draw(st.booleans())
    parts = []
    for key, value in pairs:
        key_text = json.dumps(key, ensure_ascii=ascii_only)
        if draw(st.integers(0, 9)) == 0 and key:  # the same key, written with an escape
            key_text = f'"\\u{ord(key[0]):04x}' + json.dumps(key[1:])[1:]
        parts.append(f"{key_text}:{json.dumps(value, ensure_ascii=ascii_only)}")
    return ("{" + ",".join(parts) + "}").encode()


def decoders() -> st.SearchStrategy[tuple[Decoder, bytes]]:
    # a limit no generated event reaches: the size check is tested on its own below
    return st.sampled_from(SCHEMAS).flatmap(
        lambda s: st.tuples(st.just(Decoder(s, 1 << 20)), raw_events(s))
    )


@pytest.mark.slow
@given(decoders())
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_native_decode_steps_aside_or_agrees_with_the_careful_path(
    case: tuple[Decoder, bytes],
) -> None:
    decoder, value = case
    native = decoder.fast_path.decode(value)
    careful = decoder._careful(value)
    assert native is None or native == careful, (value, native, careful)
    assert decoder.decode(value) == careful


@given(st.sampled_from(SCHEMAS).flatmap(lambda s: st.tuples(st.just(s), st.data())))
@settings(max_examples=300, deadline=None)
def test_native_decode_takes_every_plainly_valid_event(case: tuple[EventsConfig, Any]) -> None:
    """It must not step aside for the common case either, or there is nothing fast about it."""
    schema, data = case
    visible = st.characters(
        min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='|*?\\:<>=$"'
    )
    ident = st.text(visible, min_size=1, max_size=40).filter(lambda s: not s.startswith("."))
    event = {
        schema.action_field: data.draw(
            st.sampled_from([*schema.enter_actions, *schema.exit_actions])
        ),
        schema.cohort_id_field: data.draw(ident),
        schema.uid_field: data.draw(ident | st.text(min_size=1).map(lambda s: "u" + s)),
        schema.ts_field: data.draw(st.none() | st.integers(0, MAX_EPOCH_MS - 1)),
        "other": data.draw(values),
    }
    value = json.dumps(event).encode()
    decoder = Decoder(schema, 65536)
    careful = decoder._careful(value)
    assert not isinstance(careful, Rejection), careful
    assert decoder.fast_path.decode(value) == careful


@pytest.mark.parametrize(
    "value",
    [
        b'{"action":"enter","cohort_id":"c","uid":"u","ts":1.7e12}',
        b'{"action":"enter","cohort_id":"c","uid":"u","ts":"2024-01-01T00:00:00Z"}',
        b'{"action":"enter","cohort_id":"c","uid":"u\\u00e9","cohort_name":"N\\u00e4me"}',
        b' {"uid":"u","action":"exit","cohort_id":"c","cohort_description":"d"} \n',
        b'{"action":"enter","cohort_id":"c","uid":"' + b"x" * MAX_ID_CHARS + b'"}',
    ],
)
def test_native_decode_reads_floats_iso_times_escapes_and_limits_like_python(value: bytes) -> None:
    decoder = Decoder(EventsConfig(), 65536)
    native = decoder.fast_path.decode(value)
    assert native is not None
    assert native == decoder._careful(value)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b'{"action":"enter","cohort_id":"c","uid":"u","uid":"v"}',  # twice: orjson keeps the last
        b'{"action":"enter","cohort_id":"c","uid":"\\u001c"}',  # blank to Python
        b'{"action":"enter","cohort_id":"c","uid":"u","ts":-1}',
        b'{"action":"enter","cohort_id":"c","uid":"u","ts":"yesterday"}',
        b'{"action":"enter","cohort_id":"c","uid":"u","cohort_name":".hidden"}',
        b'{"action":"enter","cohort_id":"c","uid":"' + b"x" * (MAX_ID_CHARS + 1) + b'"}',
        b'{"action":"enter","cohort_id":"c","uid":"u"} x',
        b'{"action":"enter","cohort_id":"c","uid":"u",}',
        b'{"action":"enter","cohort_id":"c","uid":"\\ud800"}',
    ],
)
def test_native_decode_steps_aside_where_python_must_decide(value: bytes) -> None:
    assert Decoder(EventsConfig(), 65536).fast_path.decode(value) is None


def test_native_decode_refuses_values_over_the_size_limit() -> None:
    value = b'{"action":"enter","cohort_id":"c","uid":"u"}'
    assert fast_path(EventsConfig(), len(value)).decode(value) is not None
    assert fast_path(EventsConfig(), len(value) - 1).decode(value) is None


# --- ingest: native runs against the careful Python way, message by message ---


class RecordingDlq:
    def __init__(self) -> None:
        self.written: list[tuple[Origin, str]] = []

    def write(self, origin: Origin, reason: str, detail: str, done: Done) -> None:
        self.written.append((origin, reason))
        done()


def pipeline(
    careful_only: bool, topics: tuple[str, ...] = ("events",)
) -> tuple[Pipeline, RecordingDlq]:
    settings = Settings.model_validate(
        {"kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "dlq", "topics": list(topics)},
         "moengage": {"base_url": "http://unused"}}
    )  # fmt: skip
    dlq = RecordingDlq()
    p = Pipeline(settings, None, None, dlq, Metrics(), clock=lambda: 100.0)  # type: ignore[arg-type]
    p.tracker.assign([("events", 0), ("events", 1), ("other", 0)])
    if careful_only:
        # the native loop takes nothing, so every message goes through Pipeline._take
        p._decoder.fast_path = _TakesNothing(p._decoder)  # type: ignore[assignment]
    return p, dlq


class _TakesNothing:
    def __init__(self, decoder: Decoder) -> None:
        self.decode: Callable[[bytes], Any] = lambda value: None  # the careful path decides

    def ingest_run(self, messages: list[Any], start: int, *rest: Any) -> SimpleNamespace:
        return SimpleNamespace(
            next=start, last_offset=-1, value_bytes=0, superseded=0, superseded_bytes=0
        )


def state(p: Pipeline, dlq: RecordingDlq) -> dict[str, Any]:
    def entries(held: dict[str, Any]) -> dict[str, Any]:
        return {
            uid: (e.add, e.value, e.ts_ms, (e.range.tp, e.range.first), e.key, e.offset, e.size)
            for uid, e in held.items()
        }

    cohorts = {
        cid: None if (b := c.open) is None else (
            b.name, b.description, entries(b.adds.entries()), entries(b.removes.entries()),
            b.add_bytes, b.remove_bytes, list(b.adds.entries()), list(b.removes.entries()),
        )
        for cid, c in p.cohorts.by_id.items()
    }  # fmt: skip
    ranges = {
        tp: [(r.first, r.last, r.count, r.pending) for r in part.ranges]
        for tp, part in p.tracker._partitions.items()
    }
    return {
        "cohorts": cohorts,
        "ranges": ranges,
        "positions": p.tracker.positions(),
        "buffered": (p.buffered_events, p.buffered_bytes),
        "coalesced": p._metrics.events_coalesced._value.get(),
        "dead letters": dlq.written,
    }


event_values = st.one_of(
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(["enter", "exit"]),
            "cohort_id": st.sampled_from(["c1", "c2", "c3"]),
            "uid": st.sampled_from(["u1", "u2", "u3", "ü4", "u 5"]),
        },
        optional={
            "cohort_name": st.sampled_from(["One", "Two", "bad|name"]),
            "cohort_description": st.sampled_from(["d1", "d2"]),
            "ts": st.sampled_from([None, 5, 1.5, "2024-01-01T00:00:00Z", "nope", -3]),
        },
    ).map(orjson.dumps),
    st.sampled_from([b"", b"not json", b"[]", b'{"action":"enter"}']),
    st.none(),
)


@st.composite
def consumed_batches(draw: st.DrawFn, topics: tuple[str, ...]) -> list[list[Msg] | tuple[str, str]]:
    """Batches of messages (runs of partitions in any order, offsets rising per partition),
    and between them seals that leave partial or empty buffers behind."""
    offsets = {tp: 0 for tp in [("events", 0), ("events", 1), ("other", 0)] if tp[0] in topics}
    steps: list[list[Msg] | tuple[str, str]] = []
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        for _ in range(draw(st.integers(0, 5))):  # runs
            tp = draw(st.sampled_from(sorted(offsets)))
            for value in draw(st.lists(event_values, max_size=12)):
                offsets[tp] += draw(st.sampled_from([1, 1, 1, 3]))  # compaction leaves gaps
                key = draw(st.sampled_from([None, b"k"]))
                batch.append(
                    Msg(value, _topic=tp[0], _partition=tp[1], _offset=offsets[tp], _key=key)
                )
        steps.append(batch)
        if draw(st.booleans()):
            steps.append(
                (draw(st.sampled_from(["c1", "c2", "c3"])), draw(st.sampled_from(["all", "full"])))
            )
    return steps


def run(
    steps: list[list[Msg] | tuple[str, str]], careful_only: bool, topics: tuple[str, ...]
) -> dict[str, Any]:
    p, dlq = pipeline(careful_only, topics)
    for step in steps:
        if isinstance(step, list):
            p.ingest(list(step))
            continue
        cohort = p.cohorts.get(step[0])
        if cohort is None or cohort.open is None:
            continue
        take = Take.EVERYTHING if step[1] == "all" else Take.FULL_BODIES
        shipment = seal(cohort.open, "partner", 40, take)  # 40 bytes: a body holds few members
        for parcel in shipment.parcels:
            p._settle(parcel.members)
        p.cohorts.changed(cohort)  # an emptied buffer closes
    return state(p, dlq)


@pytest.mark.slow
@pytest.mark.parametrize("topics", [("events",), ("events", "other")])
@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_native_ingest_ends_in_the_state_of_the_careful_way(
    topics: tuple[str, ...], data: st.DataObject
) -> None:
    """One topic: runs end where the partition changes; several: also where the topic does."""
    steps = data.draw(consumed_batches(topics))
    assert run(steps, False, topics) == run(steps, True, topics)


def test_native_ingest_takes_the_common_case_itself() -> None:
    """After a run's first message opens the cohort, the rest of the run is the native loop's."""
    p, _ = pipeline(careful_only=False)
    taken_carefully: list[int] = []
    careful = p._take

    def counting(msg: Any, rng: Any, now: float) -> Any:
        taken_carefully.append(msg.offset())
        return careful(msg, rng, now)

    p._take = counting  # type: ignore[method-assign]
    events = [
        Msg(orjson.dumps({"action": "enter", "cohort_id": "c1", "uid": f"u{i % 7}"}), _offset=i)
        for i in range(100)
    ]
    p.ingest(events)  # type: ignore[arg-type]
    assert taken_carefully == [0]
    assert p.tracker.pending_events() == 7
    assert p._metrics.events_coalesced._value.get() == 93


@pytest.mark.parametrize("careful_only", [False, True], ids=["native", "careful"])
@pytest.mark.parametrize("cohorts", [300, 3000])
def test_a_cohort_makes_an_actions_events_only_when_it_sees_that_action(
    careful_only: bool, cohorts: int
) -> None:
    """A burst of cohorts that each see one action makes one Held per cohort, not two (README
    "RSS after a burst"): Python objects spread a burst over pymalloc's arenas. Each cohort's
    first event is taken carefully, its second natively (unless careful_only); a seal that sends
    nothing reads both actions' sizes. Traced: the Python objects the ingest and seal leave."""
    held_size = sys.getsizeof(CohortBuffer("probe", 0.0).adds)

    def left_behind(second: str) -> int:
        p, _ = pipeline(careful_only)
        events = [
            Msg(orjson.dumps({"action": action, "cohort_id": f"c{c}", "uid": uid}), _offset=i)
            for c in range(cohorts)
            for i, (action, uid) in enumerate([("enter", "u1"), (second, "u2")], start=2 * c)
        ]
        tracemalloc.start()
        try:
            p.ingest(events)  # type: ignore[arg-type]
            for cohort in p.cohorts.buffers():
                assert cohort.open is not None and len(cohort.open) == 2
                seal(cohort.open, "partner", 1 << 20, Take.FULL_BODIES)
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    both_actions = left_behind("exit")
    one_action = left_behind("enter")
    assert both_actions - one_action >= 0.9 * cohorts * held_size


def test_a_buffer_and_its_actions_are_small_python_objects() -> None:
    """Their names, events, uid index and counters live behind one pointer each in the malloc
    heap (which heap.release_heap trims), not in the pymalloc arenas a burst's leftovers pin."""
    buf = CohortBuffer("c" * 100, 0.0)
    buf.name, buf.description = "n" * 100, "d" * 100
    assert [sys.getsizeof(o) <= 48 for o in (buf, buf.adds, buf.removes)] == [True] * 3
