"""streamer/send.py and streamer/backoff.py: retries, 413 split, 400 bisection, the API gate.

The sender talks to a fake client (no network) that answers each request as the test says;
waits are recorded instead of slept, so every test runs in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import orjson
import pytest

from streamer._fastpath import Members
from streamer.backoff import MAX_DOUBLINGS, rate_limit_hold, retry_delay
from streamer.batch import CohortBuffer, Take
from streamer.classify import Verdict
from streamer.client import CohortSyncClient, Response
from streamer.config import MoEngageConfig
from streamer.dlq import DeadLetterWriter, Origin
from streamer.gate import ApiGate
from streamer.metrics import Metrics
from streamer.ratelimit import RateLimiter
from streamer.seal import Shipment, seal
from streamer.send import Sender
from tests.fixtures.buffers import P0, Feed

CONFIG = MoEngageConfig(
    retry_initial_seconds=0.5,
    retry_max_seconds=30.0,
    retry_after_cap_seconds=60.0,
    auth_retry_seconds=7.0,
)

# answers the fake API gives: a Response, or a function of the request's uids
Answer = Response | Callable[[list[str]], Response]


def ok() -> Response:
    return Response(200, b'{"status":"success"}', None)


def status(code: int, body: bytes = b"{}", retry_after: str | None = None) -> Response:
    location = "https://elsewhere.example/" if 300 <= code < 400 else None
    return Response(code, body, retry_after, location=location)


def failure(kind: str) -> Response:
    return Response(0, b"", None, failure=kind)


class FakeClient:
    """Answers requests from a script, then with `then` for every further request."""

    def __init__(self, script: list[Answer], then: Answer | None = None) -> None:
        self.script = list(script)
        self.then = then or ok()
        self.requests: list[list[str]] = []  # the uids of each request, in order
        self.accepted: list[str] = []
        self.reloads = 0

    async def post(self, body: bytes) -> Response:
        uids = [m["uid"] for m in orjson.loads(body)["parameters"]["members"]]
        self.requests.append(uids)
        answer = self.script.pop(0) if self.script else self.then
        response = answer(uids) if callable(answer) else answer
        if 200 <= response.status < 300:
            self.accepted += uids
        return response

    def reload_credentials(self) -> None:
        self.reloads += 1


class FakeLimiter:
    """Always has room; records the holds a 429 asks for."""

    def __init__(self) -> None:
        self.holds: list[float] = []

    async def acquire(self) -> None:
        return None

    def release(self) -> None:
        return None

    def on_rate_limited(self, hold: float) -> None:
        self.holds.append(hold)


class FakeDlq:
    """Confirms every letter at once."""

    def __init__(self) -> None:
        self.letters: list[tuple[str, str]] = []  # (uid key, reason)

    def write(self, origin: Origin, reason: str, detail: str, done: Callable[[], None]) -> None:
        self.letters.append(((origin.key or b"").decode(), reason))
        done()


class Harness:
    def __init__(self, client: FakeClient, jitter: float = 1.0) -> None:
        self.client = client
        self.limiter = FakeLimiter()
        self.dlq = FakeDlq()
        self.metrics = Metrics()
        self.gate = ApiGate(self.metrics)
        self.waits: list[float] = []
        self.blocked_while_waiting: list[bool] = []
        self.settled: list[str] = []
        self.sender = Sender(
            CONFIG,
            cast(CohortSyncClient, client),
            cast(RateLimiter, self.limiter),
            cast(DeadLetterWriter, self.dlq),
            self.metrics,
            self.gate,
            sleep=self._sleep,
            uniform=lambda low, high: low + (high - low) * jitter,
        )

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.blocked_while_waiting.append(self.gate.blocked)
        await asyncio.sleep(0)

    def settle(self, members: Members) -> None:
        self.settled += members.uids()

    async def deliver(self, shipment: Shipment) -> None:
        await asyncio.wait_for(self.sender.deliver(shipment, self.settle), 10)

    def retries(self, cause: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "cohort_streamer_retries_total", {"cause": cause}
        )
        return value or 0.0


def shipment(uids: list[str], max_bytes: int = 128_000) -> Shipment:
    buf = CohortBuffer("c-1", 0.0)
    Feed(P0).batch(buf, [(uid, True, P0) for uid in uids])
    return seal(buf, "cohort-streamer", max_bytes, Take.EVERYTHING)


UIDS = [f"user-{i:04d}" for i in range(40)]


# --- the backoff: a pure function ---


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 10, 25, 1000])
@pytest.mark.parametrize("jitter", [0.0, 0.3, 1.0])
def test_retry_delay_is_full_jitter_under_a_doubling_ceiling(attempt: int, jitter: float) -> None:
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return low + (high - low) * jitter

    delay = retry_delay(attempt, None, CONFIG, uniform)
    ceiling = min(30.0, 0.5 * 2 ** min(attempt, MAX_DOUBLINGS))
    assert bounds == [(0.0, ceiling)]
    assert delay == pytest.approx(ceiling * jitter)


@pytest.mark.parametrize(
    ("retry_after", "jitter", "expected"),
    [
        (5.0, 0.0, 5.0),  # Retry-After is a floor
        (0.1, 1.0, 2.0),  # the jittered delay wins when it is longer (attempt 2: ceiling 2 s)
        (3600.0, 0.0, 60.0),  # honoured up to retry_after_cap_seconds
        (0.0, 0.0, 0.0),
    ],
)
def test_retry_delay_honours_retry_after_up_to_the_cap(
    retry_after: float, jitter: float, expected: float
) -> None:
    delay = retry_delay(2, retry_after, CONFIG, lambda low, high: low + (high - low) * jitter)
    assert delay == pytest.approx(expected)


@pytest.mark.parametrize(("retry_after", "hold"), [(None, 1.0), (4.0, 4.0), (999.0, 60.0)])
def test_rate_limit_hold(retry_after: float | None, hold: float) -> None:
    assert rate_limit_hold(retry_after, CONFIG) == hold


# --- retries ---

RETRIED = [
    (status(429), "rate_limited"),
    (status(500), "server_error"),
    (status(503), "server_error"),
    (status(408), "server_error"),
    (status(409), "server_error"),
    (status(102), "server_error"),
    (failure("timeout"), "timeout"),
    (failure("connection"), "connection"),
]


@pytest.mark.parametrize(("answer", "cause"), RETRIED, ids=[c for _, c in RETRIED])
@pytest.mark.parametrize("failures", [1, 4])
async def test_retried_answers_are_sent_again_until_accepted(
    answer: Response, cause: str, failures: int
) -> None:
    h = Harness(FakeClient([answer] * failures))
    await h.deliver(shipment(UIDS))
    assert h.client.requests == [UIDS] * (failures + 1)  # the same request, whole, each time
    assert h.settled == UIDS and h.client.accepted == UIDS
    assert h.dlq.letters == []
    assert h.retries(cause) == failures
    # full jitter at its top (jitter 1.0): the ceiling doubles per attempt
    assert h.waits == [min(30.0, 0.5 * 2**attempt) for attempt in range(1, failures + 1)]
    assert h.limiter.holds == ([1.0] * failures if cause == "rate_limited" else [])


@pytest.mark.parametrize("header", ["3", "45", "7200"])
async def test_retry_after_is_waited_and_held_by_the_limiter(header: str) -> None:
    h = Harness(FakeClient([status(429, retry_after=header)]), jitter=0.0)
    await h.deliver(shipment(UIDS))
    expected = min(float(header), 60.0)
    assert h.waits == [expected]
    assert h.limiter.holds == [expected]
    assert h.settled == UIDS


# --- 413: split ---


@pytest.mark.parametrize("limit", [1, 7, 13, 39])
async def test_413_halves_until_each_request_is_accepted(limit: int) -> None:
    """The API refuses requests of more than `limit` members with a 413."""

    def answer(uids: list[str]) -> Response:
        return status(413) if len(uids) > limit else ok()

    h = Harness(FakeClient([], then=answer))
    await h.deliver(shipment(UIDS))
    assert sorted(h.client.accepted) == UIDS  # each member accepted exactly once
    assert sorted(h.settled) == UIDS
    assert h.dlq.letters == []
    refused = sum(1 for r in h.client.requests if len(r) > limit)
    assert refused > 0 and h.retries("too_large") == refused
    assert h.waits == []  # a split is no reason to wait


async def test_413_for_a_single_member_dead_letters_it() -> None:
    def answer(uids: list[str]) -> Response:
        return status(413) if "user-0003" in uids else ok()

    h = Harness(FakeClient([], then=answer))
    await h.deliver(shipment(UIDS[:8]))
    assert h.dlq.letters == [("user-0003", "event_too_large")]
    assert sorted(h.client.accepted) == sorted(set(UIDS[:8]) - {"user-0003"})
    assert sorted(h.settled) == UIDS[:8]  # dead-lettered counts as settled


# --- 400: bisection ---


@pytest.mark.parametrize(
    "bad",
    [{"user-0000"}, {"user-0039"}, {"user-0017", "user-0018"}, {"user-0001", "user-0020"}, set()],
)
async def test_400_bisects_until_the_refused_uids_alone_are_dead_lettered(bad: set[str]) -> None:
    body = orjson.dumps({"error": {"attribute": "uid", "message": "invalid uid"}})

    def answer(uids: list[str]) -> Response:
        return status(400, body) if bad & set(uids) else ok()

    h = Harness(FakeClient([], then=answer))
    await h.deliver(shipment(UIDS))
    assert sorted(uid for uid, _ in h.dlq.letters) == sorted(bad)
    assert {reason for _, reason in h.dlq.letters} <= {"rejected_by_api"}
    assert sorted(h.client.accepted) == sorted(set(UIDS) - bad)
    assert sorted(h.settled) == UIDS


@pytest.mark.parametrize("attribute", ["cohort_id", "partner", "action"])
async def test_400_about_the_request_dead_letters_every_member_without_bisecting(
    attribute: str,
) -> None:
    body = orjson.dumps({"error": {"attribute": attribute, "message": "bad"}})
    h = Harness(FakeClient([status(400, body)]))
    await h.deliver(shipment(UIDS))
    assert h.client.requests == [UIDS]
    assert sorted(uid for uid, _ in h.dlq.letters) == UIDS
    assert sorted(h.settled) == UIDS


# --- 401/403/3xx: the gate ---

GATED = [(401, Verdict.AUTH), (403, Verdict.AUTH)] + [
    (code, Verdict.WRONG_ENDPOINT) for code in (301, 302, 307, 404, 405, 421)
]


@pytest.mark.parametrize(("code", "verdict"), GATED, ids=[str(c) for c, _ in GATED])
@pytest.mark.parametrize("refusals", [1, 3])
async def test_a_refused_api_closes_the_gate_until_a_2xx(
    code: int, verdict: Verdict, refusals: int
) -> None:
    h = Harness(FakeClient([status(code)] * refusals))
    await h.deliver(shipment(UIDS))
    assert h.client.requests == [UIDS] * (refusals + 1)
    assert h.waits == [CONFIG.auth_retry_seconds] * refusals  # slow retries, no backoff
    assert h.blocked_while_waiting == [True] * refusals
    assert not h.gate.blocked  # the 2xx opened it again
    assert h.client.reloads == (refusals if verdict is Verdict.AUTH else 0)
    assert h.retries(verdict.value) == refusals
    assert h.settled == UIDS and h.dlq.letters == []


async def test_the_gate_stays_closed_while_the_api_refuses() -> None:
    h = Harness(FakeClient([], then=status(401)))
    task = asyncio.create_task(h.sender.deliver(shipment(UIDS), h.settle))
    while len(h.client.requests) < 5:
        await asyncio.sleep(0)
    assert h.gate.blocked and h.gate.reason is not None and "401" in h.gate.reason
    assert h.settled == []  # nothing settles without a 2xx
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
