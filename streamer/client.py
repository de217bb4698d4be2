"""The HTTP side: one aiohttp session posting Cohort Sync bodies with the credentials.

Redirects are never followed: a followed POST turns into a GET whose 200 acknowledges nothing,
and the credentials would travel to whatever host the Location names. A 3xx comes back as it
is, with its Location made printable, for classify() to treat as a configuration fault. Bodies
are read up to a cap (response.py) and never decompressed: a small gzip answer could inflate to
any size.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import NamedTuple

import aiohttp

from streamer.config import Credentials
from streamer.response import printable_location, read_at_most


class Response(NamedTuple):
    status: int  # 0 when no response arrived
    body: bytes
    retry_after: str | None
    failure: str | None = None  # "timeout" or "connection" when status is 0
    location: str | None = None  # a 3xx's Location, printable and without secrets


def credential_headers(creds: Credentials) -> tuple[dict[str, str], tuple[str, ...]]:
    """The headers of every MoEngage call (§1.2), and the secret strings among them."""
    api_key = creds.api_key.get_secret_value()
    token = base64.b64encode(f"{creds.workspace_id}:{api_key}".encode()).decode("ascii")
    headers = {
        "Authorization": "Basic " + token,
        "MOE-APPKEY": creds.workspace_id,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Encoding": "identity",  # see the module docstring: nothing is decompressed
    }
    return headers, (api_key, token)


class CohortSyncClient:
    def __init__(
        self,
        url: str,
        timeout_seconds: float,
        credentials: Callable[[], Credentials],
    ) -> None:
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._load_credentials = credentials
        self._headers: dict[str, str] = {}
        self._secrets: tuple[str, ...] = ()  # never echoed into a log line or /readyz
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self.reload_credentials()
            connector = aiohttp.TCPConnector(limit=32, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reload_credentials(self) -> None:
        """Re-read the credentials (a rotated *_FILE secret heals a 401 without a restart)."""
        self._headers, self._secrets = credential_headers(self._load_credentials())

    async def post(self, body: bytes) -> Response:
        if self._session is None:
            raise RuntimeError("CohortSyncClient.post() before start()")
        try:
            async with self._session.post(
                self._url, data=body, headers=self._headers, allow_redirects=False
            ) as resp:
                content = await read_at_most(resp)
                location = None
                if 300 <= resp.status < 400:
                    location = printable_location(resp.headers.get("Location"), self._secrets)
                retry_after = resp.headers.get("Retry-After")
                return Response(resp.status, content.data, retry_after, location=location)
        except TimeoutError:
            return Response(0, b"", None, "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            return Response(0, b"", None, f"connection: {type(exc).__name__}")
