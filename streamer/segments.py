"""`cohort-streamer segments`: look at and archive the segments Cohort Sync created.

list/get use the v3 Filter Segments API (§5.4, §5.6 of the API notes); archive/unarchive the v2
Manage Segments API (§4). Host and credentials come from the same config and environment as
`run`, so the tool always talks to the workspace the streamer writes to. As for Cohort Sync
(client.py), redirects are never followed and answers are read up to a cap.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from streamer.client import credential_headers
from streamer.config import ConfigError, Credentials, load_credentials, load_settings
from streamer.response import printable_location, read_at_most

COLUMNS = ("id", "name", "created_time", "type", "source", "archived")
# A listing has no pagination (§5.4): 1,000 active segments are about 170 KB of JSON, so the
# cap leaves room for many archived ones; a larger answer is refused, never shown cut.
ANSWER_CAP_BYTES = 4 * 1024 * 1024


class SegmentsApiError(Exception):
    """A non-2xx answer, with the API's own message (the envelopes differ by API family)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the streamer's YAML config")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
    sub = parser.add_subparsers(dest="segments_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="list segments (v3)")
    listing.add_argument("--name", help="exact segment name")
    get = sub.add_parser("get", help="one segment by id (v3)")
    get.add_argument("id")
    for verb in ("archive", "unarchive"):
        action = sub.add_parser(verb, help=f"{verb} a segment by name (v2)")
        action.add_argument("name")
        action.add_argument("--id", help="segment id; wins over the name when both match")


def run(args: argparse.Namespace) -> int:
    try:
        host = load_settings(args.config).moengage.host
        credentials = load_credentials()
    except ConfigError as exc:
        print(f"cohort-streamer segments: {exc}", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(_call(args, host, credentials))
    except SegmentsApiError as exc:
        print(f"cohort-streamer segments: {exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"cohort-streamer segments: cannot reach {host}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    elif args.segments_command in ("list", "get"):
        print(format_table(answer.get("data", [])))
    else:
        print(f"{answer.get('message', 'done')}: {answer.get('cs_name')} ({answer.get('cs_id')})")
    return 0


async def _call(args: argparse.Namespace, host: str, credentials: Credentials) -> Any:
    command = args.segments_command
    if command == "list":
        query = f"?name={urllib.parse.quote(args.name)}" if args.name else ""
        return await request("GET", f"{host}/v3/custom-segments{query}", credentials)
    if command == "get":
        segment_id = urllib.parse.quote(args.id, safe="")
        return await request("GET", f"{host}/v3/custom-segments/{segment_id}", credentials)
    body: dict[str, str] = {"name": args.name}
    if args.id:
        body["cs_id"] = args.id
    return await request("PATCH", f"{host}/v2/custom-segments/{command}", credentials, body)


async def request(
    method: str, url: str, credentials: Credentials, body: dict[str, str] | None = None
) -> Any:
    headers, secrets = credential_headers(credentials)
    data = orjson.dumps(body) if body is not None else None
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session,
        session.request(method, url, data=data, headers=headers, allow_redirects=False) as resp,
    ):
        raw, cut = await read_at_most(resp, ANSWER_CAP_BYTES)
        status = resp.status
        if 300 <= status < 400:
            location = printable_location(resp.headers.get("Location"), secrets)
            raise SegmentsApiError(
                f"HTTP {status} redirects to {location}; redirects are never followed: set "
                "moengage.base_url or moengage.data_center to the API's own host"
            )
    if not 200 <= status < 300:
        raise SegmentsApiError(f"HTTP {status}: {error_message(raw)}")
    if cut:
        raise SegmentsApiError(f"the answer is larger than {ANSWER_CAP_BYTES} bytes")
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise SegmentsApiError(f"HTTP {status} but not JSON: {raw[:200]!r}") from None


def error_message(raw: bytes) -> str:
    """The message of any of the API families' error envelopes (§1.4)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", "replace")
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if doc.get("title"):
            return f"{doc['title']}: {doc.get('description', '')}".rstrip(": ")
        if doc.get("error_message"):
            return str(doc["error_message"])
    return raw[:200].decode("utf-8", "replace")


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no segments"
    table = [COLUMNS, *[tuple(str(row.get(c, "")) for c in COLUMNS) for row in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table
    )
