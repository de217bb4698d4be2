"""streamer/client.py against a misbehaving server: redirects are answers, never followed; the
credentials never leave the configured origin; bodies are capped and never decompressed."""

from __future__ import annotations

import gzip

import pytest
from pydantic import SecretStr

from streamer.client import CohortSyncClient, Response
from streamer.config import Credentials
from streamer.response import BODY_CAP_BYTES
from tests.fixtures.hostile_api import Answer, HostileApi, MakeHostileApi

PATH = "/v1/integrations/cohortsync"
CREDENTIALS = Credentials(workspace_id="ws-1", api_key=SecretStr("sekrit-api-key-123"))
REDIRECTS = [300, 301, 302, 303, 304, 305, 307, 308, 399]


async def _post(api: HostileApi, body: bytes = b'{"a": 1}') -> Response:
    client = CohortSyncClient(api.url + PATH, 10, lambda: CREDENTIALS)
    await client.start()
    try:
        return await client.post(body)
    finally:
        await client.stop()


@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize("where", ["same", "other"])
async def test_a_redirect_is_returned_not_followed(
    hostile_api: MakeHostileApi, status: int, where: str
) -> None:
    api, elsewhere = hostile_api(), hostile_api()
    elsewhere.answer(Answer(200, body=b'{"status": "success"}'))
    location = "/landing" if where == "same" else f"{elsewhere.url}{PATH}"
    api.answer(
        lambda r: Answer(200) if r.path == "/landing" else Answer(status, {"Location": location})
    )
    resp = await _post(api)
    assert (resp.status, resp.location, resp.failure) == (status, location, None)
    assert [(r.method, r.path) for r in api.received] == [("POST", PATH)]
    assert elsewhere.received == [], "the credentials left the configured origin"


async def test_a_location_echoing_the_credentials_is_redacted(
    hostile_api: MakeHostileApi,
) -> None:
    api = hostile_api()
    key = CREDENTIALS.api_key.get_secret_value()
    api.answer(lambda r: Answer(302, {"Location": r.headers["Authorization"] + "/" + key}))
    resp = await _post(api)
    assert resp.location is not None
    assert key not in resp.location and resp.location == "Basic ***/***"


@pytest.mark.parametrize("status", [200, 400, 401, 500])
@pytest.mark.parametrize("size", [BODY_CAP_BYTES + 1, 20 * 2**20])
async def test_bodies_are_capped(hostile_api: MakeHostileApi, status: int, size: int) -> None:
    api = hostile_api()
    api.answer(Answer(status, {"Retry-After": "3"}, b'{"error": {"message": "m"}}', size))
    resp = await _post(api)
    assert (resp.status, resp.retry_after, len(resp.body)) == (status, "3", BODY_CAP_BYTES)
    assert resp.body.startswith(b'{"error"')


async def test_compressed_answers_are_not_inflated(hostile_api: MakeHostileApi) -> None:
    """We ask for identity; a server that compresses anyway gets its bytes read as they are,
    so a small gzip answer cannot inflate into a huge one."""
    bomb = gzip.compress(b" " * (50 * 2**20))
    api = hostile_api()
    api.answer(Answer(500, {"Content-Encoding": "gzip"}, bomb))
    resp = await _post(api)
    assert resp.status == 500
    assert resp.body == bomb[:BODY_CAP_BYTES]
    assert api.received[0].headers["Accept-Encoding"] == "identity"
