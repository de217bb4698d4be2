"""v3 filter segments (§5): list, get, create, update; v2 archive/unarchive (§4)."""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import Any

from . import documents
from .api import SegmentsApi
from .command import Handler, Outcome, add_json_flag
from .table import format_table

COLUMNS = ("id", "name", "created_time", "type", "source", "archived")
BASE = "/v3/custom-segments"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = _command(sub, "list", "list segments (v3)", list_segments)
    listing.add_argument("--name", help="exact segment name")
    get = _command(sub, "get", "one segment by id (v3)", get_segment)
    get.add_argument("id")
    for verb, handler in (("create", create), ("update", update)):
        command = _command(sub, verb, f"{verb} a filter segment (v3)", handler)
        if verb == "update":
            command.add_argument("id")
        command.add_argument(
            "-f", "--file", required=True, type=Path,
            help="the definition: JSON or YAML, a filter group or an object with included_filters",
        )  # fmt: skip
        command.add_argument("--name", required=verb == "create", help="the segment's name")
        if verb == "update":
            command.add_argument("--updated-by", help="email of who made the change")
    for verb in ("archive", "unarchive"):
        action = _command(sub, verb, f"{verb} a segment by name (v2)", set_archived)
        action.add_argument("name")
        action.add_argument("--id", help="segment id; wins over the name when both match")


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    add_json_flag(parser)
    parser.set_defaults(segments_handler=handler)
    return parser


async def list_segments(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    query = f"?name={urllib.parse.quote(args.name)}" if args.name else ""
    doc = await api.call("GET", BASE + query)
    return Outcome(doc, format_table(COLUMNS, doc.get("data", []), "no segments"))


async def get_segment(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    doc = await api.call("GET", f"{BASE}/{urllib.parse.quote(args.id, safe='')}")
    return Outcome(doc, format_table(COLUMNS, doc.get("data", []), "no segments"))


async def create(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    body = {"name": args.name, "included_filters": documents.load_definition(args.file)}
    doc = await api.call("POST", BASE, body)
    return Outcome(doc, _saved("created", doc))


async def update(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    body: dict[str, Any] = {"included_filters": documents.load_definition(args.file)}
    if args.name:
        body["name"] = args.name
    if args.updated_by:
        body["updated_by"] = args.updated_by
    doc = await api.call("PATCH", f"{BASE}/{urllib.parse.quote(args.id, safe='')}", body)
    return Outcome(doc, _saved("updated", doc))


async def set_archived(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    body = {"name": args.name, **({"cs_id": args.id} if args.id else {})}
    doc = await api.call("PATCH", f"/v2/custom-segments/{args.segments_command}", body)
    return Outcome(doc, f"{doc.get('message', 'done')}: {doc.get('cs_name')} ({doc.get('cs_id')})")


def _saved(verb: str, doc: Any) -> str:
    segment = doc.get("data") or {}
    return f"{verb} {segment.get('name')} ({segment.get('id')}): {segment.get('description')}"
