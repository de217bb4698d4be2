"""streamer/response.py: bounded bodies and printable Location headers, against a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from streamer.response import BODY_CAP_BYTES, LOCATION_CAP_CHARS, printable_location, read_at_most
from tests.fixtures.hostile_api import Answer, HostileApi, MakeHostileApi

HEAD = b'{"status": "fail"}'


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def _get(session: aiohttp.ClientSession, api: HostileApi, limit: int) -> tuple[bytes, bool]:
    async with session.get(api.url + "/x") as resp:
        body = await read_at_most(resp, limit)
        return body.data, body.cut


@pytest.mark.parametrize("status", [200, 400, 500])
@pytest.mark.parametrize(
    "size", [0, 1, BODY_CAP_BYTES - 1, BODY_CAP_BYTES, BODY_CAP_BYTES + 1, 2**20, 50 * 2**20]
)
async def test_at_most_the_cap_is_read_and_a_cut_is_reported(
    session: aiohttp.ClientSession, hostile_api: MakeHostileApi, status: int, size: int
) -> None:
    api = hostile_api()
    api.answer(Answer(status, body=HEAD[:size], pad_to=size))
    data, cut = await _get(session, api, BODY_CAP_BYTES)
    assert len(data) == min(size, BODY_CAP_BYTES)
    assert data == (HEAD + b" " * BODY_CAP_BYTES)[: len(data)]
    assert cut == (size > BODY_CAP_BYTES)


@pytest.mark.parametrize("limit", [1, 10, 1000])
async def test_any_limit(
    session: aiohttp.ClientSession, hostile_api: MakeHostileApi, limit: int
) -> None:
    api = hostile_api()
    api.answer(Answer(200, body=HEAD, pad_to=5000))
    assert await _get(session, api, limit) == ((HEAD + b" " * 5000)[:limit], True)


async def test_an_endless_answer_costs_the_cap_only(
    session: aiohttp.ClientSession, hostile_api: MakeHostileApi
) -> None:
    """A Content-Length of 10 GiB: the read returns after the cap (the timeout is 10 s)."""
    api = hostile_api()
    api.answer(Answer(200, pad_to=10 * 2**30))
    data, cut = await _get(session, api, BODY_CAP_BYTES)
    assert len(data) == BODY_CAP_BYTES and cut


async def test_a_cut_answer_closes_its_connection_a_whole_one_keeps_it(
    session: aiohttp.ClientSession, hostile_api: MakeHostileApi
) -> None:
    """The unread rest is discarded with the connection (never drained into the pool); an
    answer read whole leaves the connection for the next request."""
    api = hostile_api()
    api.answer(Answer(200, body=HEAD))
    await _get(session, api, BODY_CAP_BYTES)
    await _get(session, api, BODY_CAP_BYTES)
    api.answer(Answer(200, pad_to=2**20))
    await _get(session, api, BODY_CAP_BYTES)
    api.answer(Answer(200, body=HEAD))
    await _get(session, api, BODY_CAP_BYTES)
    ports = [r.peer_port for r in api.received]
    assert ports[0] == ports[1] == ports[2], "a whole answer did not keep its connection"
    assert ports[3] != ports[2], "the connection of a cut answer was reused"


# --- printable_location -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/landing", "/landing"),
        ("https://api-02.moengage.com/v1/x?y=1#z", "https://api-02.moengage.com/v1/x?y=1#z"),
        ("landing", "landing"),
        ("https://user:pw@host.example/p", "https://***@host.example/p"),
        ("//user@host.example/p", "//***@host.example/p"),
        ("/a@b", "/a@b"),  # an @ in the path is not userinfo
        ("/x\r\n\x1b[2J\x00", "/x???[2J?"),
        ("/caf\u00e9", "/caf\u00e9"),
        (None, "(no Location header)"),
        ("", "(no Location header)"),
    ],
)
def test_printable_location(value: str | None, expected: str) -> None:
    assert printable_location(value) == expected


def test_secrets_are_redacted_plain_and_percent_encoded() -> None:
    secret = "k3y/with+chars="
    value = f"/p/{secret}?key={secret}&enc=k3y%2Fwith%2Bchars%3D"
    shown = printable_location(value, [secret, ""])
    assert shown == "/p/***?key=***&enc=***"


def test_a_long_location_is_cut() -> None:
    shown = printable_location("/" + "x" * 10_000)
    assert len(shown) == LOCATION_CAP_CHARS + 3 and shown.endswith("...")


def test_a_secret_is_redacted_before_the_cut() -> None:
    secret = "s" * 40
    shown = printable_location("/" + "x" * (LOCATION_CAP_CHARS - 10) + secret, [secret])
    assert "s" * 10 not in shown
