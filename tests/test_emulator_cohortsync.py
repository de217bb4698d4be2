"""`POST /v1/integrations/cohortsync` over real HTTP: every status and the order of checks."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
import pytest

from streamer.emulator import EmulatorConfig, EmulatorHandle, Knobs
from tests.fixtures.emulator import (
    API_KEY,
    COHORT_SYNC_PATH,
    WORKSPACE_ID,
    FakeClock,
    StartEmulator,
    auth_headers,
    cohort_body,
)

SUCCESS = {
    "status": "success",
    "message": "Your request has been accepted and will be processed soon.",
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def emu(start_async_emulator: StartEmulator) -> EmulatorHandle:
    return await start_async_emulator(None)


async def post(
    session: aiohttp.ClientSession,
    emu: EmulatorHandle,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Mapping[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = auth_headers() if headers is None else headers
    async with session.post(emu.url + COHORT_SYNC_PATH, data=data, headers=hdrs) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers


def assert_fail(doc: Any, error_type: str, attribute: str | None = None) -> None:
    assert doc["status"] == "fail"
    error = doc["error"]
    assert error["type"] == error_type
    assert error.get("attribute") == attribute
    assert isinstance(error["request_id"], str) and len(error["request_id"]) == 8


async def test_accepts_and_applies(session: aiohttp.ClientSession, emu: EmulatorHandle) -> None:
    status, doc, _ = await post(session, emu, cohort_body(["a", "b"]))
    assert (status, doc) == (200, SUCCESS)
    status, doc, _ = await post(session, emu, cohort_body(["a"], action="remove_members"))
    assert status == 200
    assert emu.context.store.by_cohort("cohort-1").members == {"b"}  # type: ignore[union-attr]


async def test_charset_parameter_is_accepted(
    session: aiohttp.ClientSession, emu: EmulatorHandle
) -> None:
    headers = {**auth_headers(), "Content-Type": "application/json; charset=utf-8"}
    status, _, _ = await post(session, emu, cohort_body(), headers)
    assert status == 200


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "error_type", "message"),
    [
        (
            {"MOE-APPKEY": WORKSPACE_ID, "Content-Type": "application/json"},
            "Authentication required",
            "Authentication Header Required",
        ),
        (
            {**auth_headers(), "Authorization": _basic(WORKSPACE_ID, "wrong")},
            "Authentication required",
            "App Secret key mismatch. Please login to the dashboard to verify key",
        ),
        (
            {**auth_headers(), "MOE-APPKEY": "other"},
            "Authentication Mismatch",
            "App key mismatch in params and authentication",
        ),
        (
            {k: v for k, v in auth_headers().items() if k != "MOE-APPKEY"},
            "Authentication Mismatch",
            "App key mismatch in params and authentication",
        ),
    ],
)
async def test_401(
    session: aiohttp.ClientSession,
    emu: EmulatorHandle,
    headers: dict[str, str],
    error_type: str,
    message: str,
) -> None:
    status, doc, _ = await post(session, emu, cohort_body(), headers)
    assert status == 401
    assert_fail(doc, error_type)
    assert doc["error"]["message"] == message
    assert emu.context.store.segments() == []


@pytest.mark.parametrize(
    ("forced", "error_type"), [(401, "Authentication required"), (403, "Account Suspended")]
)
async def test_fail_auth_knob(
    session: aiohttp.ClientSession, emu: EmulatorHandle, forced: int, error_type: str
) -> None:
    emu.context.set_knobs(Knobs(api_key=API_KEY, fail_auth=forced))
    status, doc, _ = await post(session, emu, cohort_body())
    assert status == forced
    assert_fail(doc, error_type)
    assert emu.context.store.segments() == []
    assert emu.context.stats.injected["auth"] == 1


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_415(
    session: aiohttp.ClientSession, emu: EmulatorHandle, content_type: str | None
) -> None:
    headers = {k: v for k, v in auth_headers().items() if k != "Content-Type"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    status, doc, _ = await post(session, emu, cohort_body(), headers)
    assert status == 415
    assert_fail(doc, "Unsupported media type")


def body_of_size(size: int) -> bytes:
    """A valid body of exactly `size` bytes (padding goes into the description)."""
    base = orjson.dumps(cohort_body(["u1"], description=""))
    body = orjson.dumps(cohort_body(["u1"], description="x" * (size - len(base))))
    assert len(body) == size
    return body


async def test_413_boundary(session: aiohttp.ClientSession, emu: EmulatorHandle) -> None:
    limit = emu.context.knobs.max_payload_bytes
    assert limit == 128_000
    status, _, _ = await post(session, emu, body_of_size(limit))
    assert status == 200
    status, doc, _ = await post(session, emu, body_of_size(limit + 1))
    assert status == 413
    assert_fail(doc, "Payload too large")
    assert doc["error"]["message"] == "Payload can not exceed 128KB"


async def test_413_chunked_body(session: aiohttp.ClientSession, emu: EmulatorHandle) -> None:
    emu.context.set_knobs(Knobs(api_key=API_KEY, max_payload_bytes=1000))

    async def chunks() -> AsyncIterator[bytes]:
        body = body_of_size(1001)
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    url = emu.url + COHORT_SYNC_PATH
    async with session.post(url, data=chunks(), headers=auth_headers()) as resp:
        assert resp.status == 413


async def test_400_malformed_and_missing(
    session: aiohttp.ClientSession, emu: EmulatorHandle
) -> None:
    status, doc, _ = await post(session, emu, b"{not json")
    assert status == 400
    assert_fail(doc, "Malformed JSON")
    status, doc, _ = await post(session, emu, {"partner": "p"})
    assert status == 400
    assert_fail(doc, "MissingAttributeError", "action")
    assert doc["error"]["message"] == "action is not found in the payload"


@pytest.mark.parametrize(
    ("body", "attribute"),
    [
        ({**cohort_body(), "action": "replace"}, "action"),
        ({**cohort_body(), "partner": ""}, "partner"),
        ({**cohort_body(), "parameters": "x"}, "parameters"),
        (cohort_body(cohort_id=""), "cohort_id"),
        (cohort_body(cohort_name="a:b"), "cohort_name"),
        (cohort_body(cohort_name=".a"), "cohort_name"),
        (cohort_body([]), "members"),
        (cohort_body([""]), "members"),
    ],
)
async def test_400_invalid_attribute(
    session: aiohttp.ClientSession, emu: EmulatorHandle, body: dict[str, Any], attribute: str
) -> None:
    status, doc, _ = await post(session, emu, body)
    assert status == 400
    assert_fail(doc, "InvalidAttributeError", attribute)


async def test_refuse_uids(session: aiohttp.ClientSession, emu: EmulatorHandle) -> None:
    emu.context.set_knobs(Knobs(api_key=API_KEY, refuse_uids=frozenset({"bad-2", "bad-1"})))
    status, doc, _ = await post(session, emu, cohort_body(["ok", "bad-1", "bad-2"]))
    assert status == 400
    assert_fail(doc, "InvalidAttributeError", "members")
    assert "bad-1" in doc["error"]["message"]
    assert emu.context.store.segments() == []
    status, _, _ = await post(session, emu, cohort_body(["ok"]))
    assert status == 200


async def test_injected_500_changes_nothing(
    session: aiohttp.ClientSession, emu: EmulatorHandle
) -> None:
    emu.context.set_knobs(Knobs(api_key=API_KEY, fail_5xx_ratio=1.0))
    status, doc, _ = await post(session, emu, cohort_body())
    assert status == 500
    assert_fail(doc, "Server Error")
    assert emu.context.store.segments() == []
    assert emu.context.stats.injected["500"] == 1


async def test_injected_429_has_no_retry_after(
    session: aiohttp.ClientSession, emu: EmulatorHandle
) -> None:
    emu.context.set_knobs(Knobs(api_key=API_KEY, fail_429_ratio=1.0))
    status, doc, headers = await post(session, emu, cohort_body())
    assert status == 429
    assert_fail(doc, "Rate Limits Exceeded")
    assert "Retry-After" not in headers
    assert emu.context.limiter.window.count(emu.context.clock()) == 0


async def statuses(session: aiohttp.ClientSession, emu: EmulatorHandle, n: int) -> list[int]:
    return [(await post(session, emu, cohort_body([f"u{i}"])))[0] for i in range(n)]


async def test_same_seed_same_faults(
    session: aiohttp.ClientSession, start_async_emulator: StartEmulator
) -> None:
    def config(seed: int) -> EmulatorConfig:
        knobs = Knobs(api_key=API_KEY, seed=seed, fail_5xx_ratio=0.3, fail_429_ratio=0.2)
        return EmulatorConfig(workspace_id=WORKSPACE_ID, knobs=knobs)

    first = await statuses(session, await start_async_emulator(config(7)), 40)
    second = await statuses(session, await start_async_emulator(config(7)), 40)
    other = await statuses(session, await start_async_emulator(config(8)), 40)
    assert first == second
    assert first != other
    assert {200, 429, 500} == set(first)


async def test_reset_restarts_fault_sequence(
    session: aiohttp.ClientSession, emu: EmulatorHandle
) -> None:
    emu.context.set_knobs(Knobs(api_key=API_KEY, seed=3, fail_5xx_ratio=0.5))
    first = await statuses(session, emu, 20)
    emu.context.reset(restore_knobs=False)
    assert await statuses(session, emu, 20) == first


async def test_latency_applies_change_before_delay(
    session: aiohttp.ClientSession, emu: EmulatorHandle
) -> None:
    emu.context.set_knobs(Knobs(api_key=API_KEY, latency_ms=1500))
    url = emu.url + COHORT_SYNC_PATH
    timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            url, data=orjson.dumps(cohort_body(["late"])), headers=auth_headers(), timeout=timeout
        ) as resp:
            await resp.read()
    # The client gave up, yet the change is already in: the outcome was unknowable to it.
    segment = emu.context.store.by_cohort("cohort-1")
    assert segment is not None and segment.members == {"late"}


async def test_rate_window_is_sliding(
    session: aiohttp.ClientSession, start_async_emulator: StartEmulator
) -> None:
    clock = FakeClock()
    knobs = Knobs(api_key=API_KEY, rate_limit_per_minute=5, rate_window_seconds=2.0)
    emu = await start_async_emulator(
        EmulatorConfig(workspace_id=WORKSPACE_ID, knobs=knobs, clock=clock)
    )
    # Offsets are binary fractions so the window edges compare exactly.
    for offset in (0.0, 0.5, 1.0, 1.5, 1.75):
        clock.at(offset)
        assert (await post(session, emu, cohort_body()))[0] == 200
    clock.at(1.875)  # five accepted in the last 2 s
    status, doc, headers = await post(session, emu, cohort_body())
    assert status == 429
    assert_fail(doc, "Rate Limits Exceeded")
    assert headers["Retry-After"] == "1"
    clock.at(2.0)  # the request at +0 has left the window (0, 2]
    assert (await post(session, emu, cohort_body()))[0] == 200
    clock.at(2.125)  # window (0.125, 2.125] holds five again
    assert (await post(session, emu, cohort_body()))[0] == 429
    clock.at(2.5)  # the request at +0.5 has left
    assert (await post(session, emu, cohort_body()))[0] == 200
    stats = emu.context.stats.to_json(include_times=False)
    assert stats["max_accepted_in_window"] == 5
    assert stats["max_arrivals_in_window"] == 7  # (0.125, 2.125], refusals included


async def test_refused_requests_do_not_use_the_budget(
    session: aiohttp.ClientSession, start_async_emulator: StartEmulator
) -> None:
    knobs = Knobs(api_key=API_KEY, rate_limit_per_minute=2, fail_5xx_ratio=0.0)
    emu = await start_async_emulator(
        EmulatorConfig(workspace_id=WORKSPACE_ID, knobs=knobs, clock=FakeClock())
    )
    assert (await post(session, emu, cohort_body()))[0] == 200
    assert (await post(session, emu, cohort_body([])))[0] == 400
    assert (await post(session, emu, cohort_body(), headers={}))[0] == 401
    assert (await post(session, emu, cohort_body()))[0] == 200
    assert (await post(session, emu, cohort_body([])))[0] == 429  # limit before validation


async def test_check_order_auth_before_size_and_type(
    session: aiohttp.ClientSession, emu: EmulatorHandle
) -> None:
    bad_auth = {"Content-Type": "text/plain"}
    assert (await post(session, emu, body_of_size(200_000), bad_auth))[0] == 401
    no_json = {**auth_headers(), "Content-Type": "text/plain"}
    assert (await post(session, emu, body_of_size(200_000), no_json))[0] == 415
    assert (await post(session, emu, b"x" * 200_000))[0] == 413
