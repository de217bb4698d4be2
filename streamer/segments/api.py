"""The Segments APIs client: one request at a time, never following a redirect, answers capped.

Host and credentials come from the same config and environment as `run`, so the tool always
talks to the workspace the streamer writes to. As for Cohort Sync (client.py), a 3xx is refused
(credentials never leave the configured origin) and an answer is read up to a cap.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from streamer.client import credential_headers
from streamer.config import Credentials
from streamer.response import printable_location, read_at_most

# A listing has no pagination (§5.4): 1,000 active segments are about 170 KB of JSON, so the
# cap leaves room for many archived ones; a larger answer is refused, never shown cut.
ANSWER_CAP_BYTES = 4 * 1024 * 1024
TIMEOUT_SECONDS = 30


class SegmentsApiError(Exception):
    """A failed call: the HTTP status (0 when none arrived) and the API's own message."""

    def __init__(self, message: str, status: int = 0, doc: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.doc = doc  # the decoded error envelope, when there was one


class SegmentsApi:
    """Calls to one workspace's host. Use as `async with SegmentsApi(host, creds) as api:`."""

    def __init__(self, host: str, credentials: Credentials) -> None:
        self.host = host
        self._headers, self._secrets = credential_headers(credentials)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SegmentsApi:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> Any:
        """The decoded JSON answer of a 2xx; SegmentsApiError for anything else."""
        if self._session is None:
            raise RuntimeError("SegmentsApi.call() outside `async with`")
        data = orjson.dumps(body) if body is not None else None
        headers = {**self._headers, **({"Content-Type": content_type} if content_type else {})}
        try:
            async with self._session.request(
                method, self.host + path, data=data, headers=headers, allow_redirects=False
            ) as resp:
                raw, cut = await read_at_most(resp, ANSWER_CAP_BYTES)
                status = resp.status
                location = resp.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise SegmentsApiError(f"cannot reach {self.host}: {reason}") from None
        if 300 <= status < 400:
            raise SegmentsApiError(
                f"HTTP {status} redirects to {printable_location(location, self._secrets)}; "
                "redirects are never followed: set moengage.base_url or moengage.data_center "
                "to the API's own host",
                status,
            )
        return _decoded(status, raw, cut)


def _decoded(status: int, raw: bytes, cut: bool) -> Any:
    if not 200 <= status < 300:
        doc = _json_or_none(raw)
        raise SegmentsApiError(f"HTTP {status}: {error_message(raw)}", status, doc)
    if cut:
        raise SegmentsApiError(f"the answer is larger than {ANSWER_CAP_BYTES} bytes", status)
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise SegmentsApiError(f"HTTP {status} but not JSON: {raw[:200]!r}", status) from None


def _json_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def error_message(raw: bytes) -> str:
    """The message of any of the API families' error envelopes (§1.4)."""
    doc = _json_or_none(raw)
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if doc.get("title"):
            return f"{doc['title']}: {doc.get('description', '')}".rstrip(": ")
        if doc.get("error_message"):
            return str(doc["error_message"])
    return raw[:200].decode("utf-8", "replace")
