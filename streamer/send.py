"""Deliver a shipment of packed bodies: rate-limit, send, and handle every failure class.

Retries (429, 5xx, timeouts, connection errors) never give up: full-jitter exponential backoff,
Retry-After honoured up to a cap. 413 halves the request; a 400 about members is bisected until
the refused uids are isolated and dead-lettered, so one bad uid never holds back its cohort.
401/403 and 3xx close the API gate (gate.py: the pipeline pauses consumption) and the same
request is retried slowly (freshly read credentials after a 401/403) until the API accepts it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from streamer._fastpath import Members
from streamer.backoff import Uniform, rate_limit_hold, retry_delay
from streamer.classify import Outcome, Verdict, classify
from streamer.client import CohortSyncClient
from streamer.config import ConfigError, MoEngageConfig
from streamer.dlq import DeadLetterWriter, Origin
from streamer.gate import ApiGate
from streamer.metrics import Metrics, status_class
from streamer.payload import Envelope
from streamer.ratelimit import RateLimiter
from streamer.seal import Shipment

# called once per parcel with the events it settled (accepted by the API or dead-lettered)
Settle = Callable[[Members], None]

log = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        config: MoEngageConfig,
        client: CohortSyncClient,
        limiter: RateLimiter,
        dlq: DeadLetterWriter,
        metrics: Metrics,
        gate: ApiGate,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        uniform: Uniform = random.uniform,
    ) -> None:
        self._config = config
        self._sleep = sleep  # tests pass fakes for the waits and the jitter
        self._uniform = uniform
        self._client = client
        self._limiter = limiter
        self._dlq = dlq
        self._metrics = metrics
        self.gate = gate

    async def deliver(self, shipment: Shipment, settle: Settle) -> None:
        """Send each parcel of `shipment` not settled yet; `settle` runs once per parcel, after
        every change in it is accepted by the API or confirmed in the DLQ.

        Safe to call again after an exception: settled parcels are skipped, and an unsettled
        one is sent again whole (add and remove are idempotent).
        """
        while shipment.too_large:
            refused = shipment.too_large[0]
            detail = "a request with this uid alone exceeds max_payload_bytes"
            await self._reject(shipment.cohort_id, refused, "event_too_large", detail)
            settle(refused)
            shipment.too_large.pop(0)
        while shipment.done < len(shipment.parcels):
            parcel = shipment.parcels[shipment.done]
            await self._send(shipment.cohort_id, parcel.envelope, parcel.members, parcel.data)
            settle(parcel.members)
            shipment.done += 1

    async def _send(
        self,
        cohort_id: str,
        envelope: Envelope,
        members: Members,
        data: bytes | None = None,
    ) -> None:
        if data is None:
            data = members.body(envelope.head, envelope.tail)
        attempt = 0
        while True:
            status, outcome = await self._post(envelope.action, data)
            verdict = outcome.verdict
            if verdict is Verdict.ACCEPTED:
                self.gate.open()
                self._record_accepted(envelope.action, members, len(data))
                return
            if verdict is Verdict.RETRY:
                attempt += 1
                await self._back_off(outcome.cause, attempt, outcome.retry_after)
            elif verdict is Verdict.AUTH or verdict is Verdict.WRONG_ENDPOINT:
                await self._wait_until_usable(outcome)
            elif verdict is Verdict.REJECT_ALL or len(members) == 1:
                reason = "event_too_large" if verdict is Verdict.SPLIT else "rejected_by_api"
                detail = f"HTTP {status}: {outcome.cause}"
                await self._reject(cohort_id, members, reason, detail, status)
                return
            else:  # SPLIT (413) or BISECT (400 about members): send each half on its own
                if verdict is Verdict.SPLIT:
                    self._metrics.retries.labels(outcome.cause).inc()
                first, rest = members.halves()
                await self._send(cohort_id, envelope, first)
                await self._send(cohort_id, envelope, rest)
                return

    async def _post(self, action: str, data: bytes) -> tuple[int, Outcome]:
        waited = time.perf_counter()
        await self._limiter.acquire()
        started = time.perf_counter()
        self._metrics.rate_limiter_wait.observe(started - waited)
        self._metrics.inflight_requests.inc()
        try:
            resp = await self._client.post(data)
        finally:
            self._limiter.release()
            self._metrics.inflight_requests.dec()
        self._metrics.request_duration.labels(action).observe(time.perf_counter() - started)
        if resp.failure is not None:
            label = "timeout" if resp.failure == "timeout" else "error"
            self._metrics.requests.labels(action, label).inc()
            cause = "timeout" if resp.failure == "timeout" else "connection"
            return 0, Outcome(Verdict.RETRY, cause)
        self._metrics.requests.labels(action, status_class(resp.status)).inc()
        return resp.status, classify(resp.status, resp.body, resp.retry_after, resp.location)

    async def _back_off(self, cause: str, attempt: int, retry_after: float | None) -> None:
        self._metrics.retries.labels(cause).inc()
        if cause == "rate_limited":
            self._limiter.on_rate_limited(rate_limit_hold(retry_after, self._config))
            self._metrics.budget_share.set(self._limiter.limit)
        delay = retry_delay(attempt, retry_after, self._config, self._uniform)
        log.debug(
            "retrying after %.2fs (%s, attempt %d)", delay, cause, attempt, extra={"reason": cause}
        )
        await self._sleep(delay)

    async def _wait_until_usable(self, refusal: Outcome) -> None:
        """After a 401/403 or a 3xx: close the gate and wait `auth_retry_seconds` (a person has
        to fix this; fast retries would only burn the budget); re-read the credentials after a
        401/403, so a rotated Secret heals without a restart."""
        self._metrics.retries.labels(refusal.verdict.value).inc()
        self.gate.close(refusal.verdict, refusal.cause)
        await self._sleep(self._config.auth_retry_seconds)
        if refusal.verdict is not Verdict.AUTH:
            return
        try:
            self._client.reload_credentials()
        except ConfigError as exc:
            log.error("cannot re-read credentials: %s", exc)

    async def _reject(
        self, cohort_id: str, members: Members, reason: str, detail: str, status: int = 0
    ) -> None:
        """Dead-letter these winning events; returns once the broker confirmed them all.
        `status`: the API's answer that refused them (0: refused before sending)."""
        origins = [Origin(*origin) for origin in members.origins()]
        if not origins:
            return
        first = origins[0]
        fields = {"cohort_id": cohort_id, "topic": first.topic, "partition": first.partition,
                  "offset": first.offset, "reason": reason}  # fmt: skip
        log.warning(
            "dead-lettering %d member(s) of cohort %s (first from %s[%d]@%d): %s",
            len(origins), cohort_id, first.topic, first.partition, first.offset, detail,
            extra={**fields, "status": status} if status else fields,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        remaining = len(origins)
        all_written = loop.create_future()

        def written() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 and not all_written.done():
                all_written.set_result(None)

        self._metrics.invalid_events.labels(reason).inc(len(origins))
        for origin in origins:
            self._dlq.write(origin, reason, detail, written)
        await all_written

    def _record_accepted(self, action: str, members: Members, size: int) -> None:
        m = self._metrics
        m.members_per_request.labels(action).observe(len(members))
        m.request_body_bytes.labels(action).observe(size)
        m.members_acknowledged.labels(action).inc(len(members))
        m.ack_latency.observe(*members.ages(time.time() * 1000, m.ack_latency.bounds))
