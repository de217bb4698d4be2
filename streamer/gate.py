"""Whether the MoEngage API can be used at all and, while it cannot, why.

Some answers mean every request will fail until someone changes something outside the
streamer: 401/403 (the credentials: fix the Secret, re-read on every retry) and any 3xx, 404,
405 or 421 (the URL: fix moengage.base_url or moengage.data_center). Either closes the gate;
while it is closed consumption pauses, /readyz fails with the reason, and the sender retries
slowly. The next 2xx opens it. The latest refusal decides the reason.
"""

from __future__ import annotations

import logging

from streamer.classify import Verdict
from streamer.metrics import Metrics

log = logging.getLogger(__name__)

# the reason /readyz and the log give, from the refusal's detail (classify's Outcome.cause)
_REASONS = {
    Verdict.AUTH: "MoEngage refuses the credentials ({})",
    Verdict.WRONG_ENDPOINT: (
        "the MoEngage URL does not reach the Cohort Sync API ({}); redirects are never "
        "followed: set moengage.base_url or moengage.data_center to the API's own host"
    ),
}


class ApiGate:
    def __init__(self, metrics: Metrics) -> None:
        self.reason: str | None = None
        self._gauges = {
            Verdict.AUTH: metrics.auth_failing,
            Verdict.WRONG_ENDPOINT: metrics.endpoint_misconfigured,
        }

    @property
    def blocked(self) -> bool:
        return self.reason is not None

    def close(self, refusal: Verdict, detail: str) -> None:
        """`refusal` is Verdict.AUTH or Verdict.WRONG_ENDPOINT."""
        reason = _REASONS[refusal].format(detail)
        if reason != self.reason:
            log.error("%s; pausing consumption", reason)
        self.reason = reason
        for verdict, gauge in self._gauges.items():
            gauge.set(1 if verdict is refusal else 0)

    def open(self) -> None:
        if self.reason is not None:
            log.info("MoEngage accepts our requests again; resuming")
        self.reason = None
        for gauge in self._gauges.values():
            gauge.set(0)
