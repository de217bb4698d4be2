"""The HTTP side: one aiohttp session posting Cohort Sync bodies with the credentials."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import NamedTuple

import aiohttp

from streamer.config import Credentials


class Response(NamedTuple):
    status: int  # 0 when no response arrived
    body: bytes
    retry_after: str | None
    failure: str | None = None  # "timeout" or "connection" when status is 0


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
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self.reload_credentials()
            connector = aiohttp.TCPConnector(limit=32, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reload_credentials(self) -> None:
        """Re-read the credentials (a rotated *_FILE secret heals a 401 without a restart)."""
        creds = self._load_credentials()
        token = f"{creds.workspace_id}:{creds.api_key.get_secret_value()}".encode()
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(token).decode("ascii"),
            "MOE-APPKEY": creds.workspace_id,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def post(self, body: bytes) -> Response:
        if self._session is None:
            raise RuntimeError("CohortSyncClient.post() before start()")
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as resp:
                return Response(resp.status, await resp.read(), resp.headers.get("Retry-After"))
        except TimeoutError:
            return Response(0, b"", None, "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            return Response(0, b"", None, f"connection: {type(exc).__name__}")
