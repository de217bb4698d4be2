"""Cohort Sync bodies (streamer/payload.py's envelope, members written in Rust by a seal) are
valid, packed close to the limit, never over, and byte-equal to the reference packer's."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.payload import Envelope
from tests.fixtures.bodies import member_bytes, overhead, pack_one_by_one
from tests.fixtures.buffers import Body, sealed

PARTNER = "cohort-streamer"
MAX = 128_000


def reference(env: Envelope, uids: list[str], max_bytes: int) -> tuple[list[Body], list[str]]:
    bodies, too_large = pack_one_by_one(env, uids, max_bytes)
    return [Body(*body) for body in bodies], too_large


def envelope(
    action: str = "add_members",
    cohort_id: str = "c-1",
    name: str = "Cohort One",
    description: str | None = None,
) -> Envelope:
    return Envelope(action, PARTNER, cohort_id, name, description)


def parse(body: Body, env: Envelope, cohort_id: str, name: str, description: str | None) -> None:
    """The body matches the Cohort Sync schema and carries exactly body.uids, in order."""
    doc: Any = orjson.loads(body.data)
    assert set(doc) == {"action", "partner", "parameters"}
    assert doc["action"] == env.action
    assert doc["action"] in ("add_members", "remove_members")
    assert doc["partner"] == PARTNER
    params = doc["parameters"]
    keys = {"cohort_name", "cohort_id", "members"} | (
        {"cohort_description"} if description else set()
    )
    assert set(params) == keys
    assert params["cohort_id"] == cohort_id
    assert params["cohort_name"] == name
    if description:
        assert params["cohort_description"] == description
    members = params["members"]
    assert isinstance(members, list)
    assert members, "a body never has an empty member list"
    for member in members:
        assert set(member) == {"uid"}
        assert isinstance(member["uid"], str)
        assert member["uid"]
    assert [m["uid"] for m in members] == body.uids


def check_pack(
    uids: list[str], max_bytes: int, env: Envelope | None = None, **env_args: Any
) -> tuple[list[Body], list[str]]:
    env = env or envelope(**env_args)
    cohort_id = env_args.get("cohort_id", "c-1")
    name = env_args.get("name", "Cohort One")
    description = env_args.get("description")
    bodies, too_large = sealed(env, uids, max_bytes)
    refused = set(too_large)
    fitting = [u for u in uids if u not in refused]
    # every uid exactly once, order preserved, too-large ones reported and left out
    assert [u for b in bodies for u in b.uids] == fitting
    assert sorted(too_large) == sorted(
        u for u in uids if overhead(env) + len(member_bytes(u)) > max_bytes
    )
    for b in bodies:
        parse(b, env, cohort_id, name, description)
        assert len(b.data) <= max_bytes
    # packed close: the next member would not have fitted into the previous body
    for b, following in itertools.pairwise(bodies):
        assert len(b.data) + 1 + len(member_bytes(following.uids[0])) > max_bytes
    return bodies, too_large


def test_one_small_body() -> None:
    bodies, too_large = check_pack(["a", "b", "c"], MAX)
    assert too_large == []
    assert len(bodies) == 1
    assert orjson.loads(bodies[0].data) == {
        "action": "add_members",
        "partner": PARTNER,
        "parameters": {
            "cohort_name": "Cohort One",
            "cohort_id": "c-1",
            "members": [{"uid": "a"}, {"uid": "b"}, {"uid": "c"}],
        },
    }


def test_remove_members_with_description() -> None:
    bodies, _ = check_pack(
        ["x"], MAX, action="remove_members", description="people who left", name="Leavers"
    )
    doc = orjson.loads(bodies[0].data)
    assert doc["action"] == "remove_members"
    assert doc["parameters"]["cohort_description"] == "people who left"


@pytest.mark.parametrize("description", [None, ""])
def test_no_description_key_when_absent_or_empty(description: str | None) -> None:
    bodies, _ = check_pack(["x"], MAX, description=description)
    assert "cohort_description" not in orjson.loads(bodies[0].data)["parameters"]


def test_no_uids_no_bodies() -> None:
    assert sealed(envelope(), [], MAX) == ([], [])


def test_envelope_overhead_is_the_empty_body() -> None:
    env = envelope(description="d")
    empty = env.head + env.tail
    assert len(empty) == overhead(env)
    assert empty.endswith(b'"members":[]}}')
    assert orjson.loads(empty)["parameters"] == {
        "cohort_name": "Cohort One",
        "cohort_id": "c-1",
        "cohort_description": "d",
        "members": [],
    }


def test_many_uuids_fill_bodies_close_to_128k() -> None:
    uids = [str(uuid.UUID(int=i)) for i in range(20_000)]
    bodies, too_large = check_pack(uids, MAX)
    assert too_large == []
    assert len(bodies) >= 2
    member = len(member_bytes(uids[0])) + 1
    for b in bodies[:-1]:
        assert MAX - member < len(b.data) <= MAX
    # the lower bound on the number of requests is met: each body holds as many as fit
    per_body = (MAX - overhead(envelope()) + 1) // member
    assert all(len(b.uids) == per_body for b in bodies[:-1])
    assert len(bodies) == -(-len(uids) // per_body)


def test_exact_boundary_body_of_max_bytes_is_allowed() -> None:
    env = envelope()
    room = 1000 - overhead(env)
    uid = "u" * (room - len(member_bytes("")))
    assert overhead(env) + len(member_bytes(uid)) == 1000
    bodies, too_large = check_pack([uid], 1000)
    assert too_large == []
    assert len(bodies[0].data) == 1000
    bodies, too_large = check_pack([uid], 999)
    assert bodies == []
    assert too_large == [uid]


def test_exact_boundary_with_two_members() -> None:
    env = envelope()
    first = "a" * 50
    budget = 1000 - overhead(env) - len(member_bytes(first)) - 1
    second = "b" * (budget - len(member_bytes("")))
    bodies, _ = check_pack([first, second], 1000)
    assert [len(b.data) for b in bodies] == [1000]
    bodies, _ = check_pack([first, second], 999)
    assert [b.uids for b in bodies] == [[first], [second]]


@pytest.mark.parametrize(
    ("uid", "encoded"),
    [
        ('a"b', b'{"uid":"a\\"b"}'),
        ("a\\b", b'{"uid":"a\\\\b"}'),
        ("😀", '{"uid":"😀"}'.encode()),
        ("é", '{"uid":"é"}'.encode()),
        ("\x01", b'{"uid":"\\u0001"}'),
        ("\n", b'{"uid":"\\n"}'),
    ],
)
def test_member_bytes_are_the_real_escaped_utf8(uid: str, encoded: bytes) -> None:
    assert member_bytes(uid) == encoded
    assert orjson.loads(member_bytes(uid)) == {"uid": uid}


@pytest.mark.parametrize("char", ["😀", '"', "\\", "\x01", "ü"])
def test_multibyte_and_escaped_uids_are_measured_on_real_bytes(char: str) -> None:
    # counted in characters these would all fit in a handful of bodies; in bytes they do not
    uids = [f"{char * 20}{i}" for i in range(400)]
    bodies, too_large = check_pack(uids, 4096, name='Ünï "cohort" 😀')
    assert too_large == []
    chars = sum(len(u) + 11 for u in uids)
    real = sum(len(member_bytes(u)) + 1 for u in uids)
    assert real > chars
    assert len(bodies) >= real // 4096


def test_unicode_cohort_name_and_description_are_in_the_envelope_size() -> None:
    env = envelope(name="Ünï 😀 " * 50, description='quote " and \\ ' * 50)
    uids = [f"u{i}" for i in range(500)]
    bodies, _ = check_pack(
        uids, 2048, env=env, name="Ünï 😀 " * 50, description='quote " and \\ ' * 50
    )
    assert all(len(b.data) <= 2048 for b in bodies)


def test_too_large_uid_is_reported_and_the_rest_still_sent_in_order() -> None:
    uids = ["a", "b", "x" * 5000, "c", "y" * 6000, "d"]
    bodies, too_large = check_pack(uids, 2048)
    assert too_large == ["x" * 5000, "y" * 6000]
    assert [u for b in bodies for u in b.uids] == ["a", "b", "c", "d"]
    assert len(bodies) == 1


def test_max_below_envelope_makes_everything_too_large() -> None:
    env = envelope()
    bodies, too_large = sealed(env, ["a", "b"], overhead(env))
    assert bodies == []
    assert too_large == ["a", "b"]


uid_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from(['"', "\\", "😀", "\x00", "\x1f", "é"]),
    min_size=1,
    max_size=60,
)


@given(
    st.lists(uid_text, unique=True, max_size=150),
    st.integers(min_value=0, max_value=3000),
    st.sampled_from([None, "", 'desc ü " \\']),
    st.text(min_size=1, max_size=20),
)
@settings(max_examples=200, deadline=None)
def test_pack_property(uids: list[str], extra: int, description: str | None, name: str) -> None:
    env = envelope(name=name, description=description)
    max_bytes = overhead(env) + extra
    check_pack(uids, max_bytes, env=env, name=name, description=description)


@given(
    st.lists(uid_text, unique=True, max_size=300),
    st.integers(min_value=0, max_value=4000),
    st.text(min_size=1, max_size=20),
)
@settings(max_examples=300, deadline=None)
def test_native_packing_equals_orjson_one_by_one(uids: list[str], extra: int, name: str) -> None:
    """Members are written in Rust; byte-exact with orjson for any uid (escapes, control
    characters, non-ASCII), including which uids fit in no body."""
    env = envelope(name=name)
    max_bytes = overhead(env) + extra
    assert sealed(env, uids, max_bytes) == reference(env, uids, max_bytes)
