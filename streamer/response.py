"""What the streamer takes from an HTTP answer: a bounded body and a printable Location.

An answer from outside is hostile until proven otherwise. Its body may be any size, while only a
prefix is ever used (an error message, a small JSON document): reading it whole let 50 MB answers
take the process from 61 to 299 MB. Its headers may carry anything, our own secrets echoed back,
control characters or kilobytes of padding, and a Location ends up in logs and on /readyz.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import NamedTuple

import aiohttp

BODY_CAP_BYTES = 64 * 1024  # far more than any error envelope of the API (§1.4)
LOCATION_CAP_CHARS = 200
# scheme://user:password@host -> the userinfo part (also scheme-relative //user@host)
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:)?//)[^/?#]*@")


class Body(NamedTuple):
    data: bytes
    cut: bool  # the answer was longer than the cap: `data` is only its beginning


async def read_at_most(resp: aiohttp.ClientResponse, limit: int = BODY_CAP_BYTES) -> Body:
    """The first `limit` bytes of the body. The rest is never read: the connection is closed
    instead of drained, so an answer of any size costs at most `limit` bytes and no time."""
    data = bytearray()
    while len(data) <= limit:  # one byte past the limit tells a cut body from an exact fit
        chunk = await resp.content.read(limit + 1 - len(data))
        if not chunk:
            return Body(bytes(data), cut=False)
        data += chunk
    resp.close()  # not release(): the unread rest must not be drained into a pooled connection
    return Body(bytes(data[:limit]), cut=True)


def printable_location(value: str | None, secrets: Iterable[str] = ()) -> str:
    """A Location header fit for a log line: none of `secrets` (plain or percent-encoded), no
    userinfo, no control characters, at most LOCATION_CAP_CHARS characters."""
    if not value:
        return "(no Location header)"
    text = value
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(urllib.parse.quote(secret, safe=""), "***")
    text = _USERINFO.sub(r"\1***@", text)
    text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > LOCATION_CAP_CHARS:
        text = text[:LOCATION_CAP_CHARS] + "..."
    return text
