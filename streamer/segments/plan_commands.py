"""`segments plan -f segments.yaml` and `segments apply -f segments.yaml [--prune]`.

plan reads only (one listing, then one get per declared segment that exists); apply carries
the plan out, one step after another, paced by the documented v3 limits, and goes on after a
failed step so one bad segment does not hold the others back (exit 1 if any failed). A second
apply of the same file finds every segment up to date and changes nothing.
"""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import Any

from streamer import segment_limits as limits

from .api import SegmentsApi, SegmentsApiError
from .command import API_ERROR, OK, Outcome, add_json_flag
from .pacing import Pacer
from .plan import Manifest, Step, load_manifest, needs_definition, plan
from .table import format_table

BASE = "/v3/custom-segments"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, handler, help_text in (
        ("plan", plan_command, "show what apply would create, update, leave and archive"),
        ("apply", apply_command, "make the workspace's filter segments match the file"),
    ):
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("-f", "--file", required=True, type=Path, help="segments.yaml")
        parser.add_argument(
            "--prune", action="store_true", help="archive filter segments the file does not declare"
        )
        add_json_flag(parser)
        parser.set_defaults(segments_handler=handler)


async def plan_command(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    steps = await _plan(load_manifest(args.file), api, Pacer(), args.prune)
    rows = [s.to_json() for s in steps]
    text = format_table(("action", "name", "id", "reason"), rows, "nothing declared")
    return Outcome({"steps": rows}, text)


async def apply_command(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    manifest = load_manifest(args.file)
    pacer = Pacer()
    results = []
    for step in await _plan(manifest, api, pacer, args.prune):
        result = await _carry_out(step, manifest, api, pacer)
        results.append({**step.to_json(), "result": result})
    failed = any(r["result"].startswith("failed") for r in results)
    text = format_table(("action", "name", "id", "result"), results, "nothing declared")
    return Outcome({"steps": results}, text, API_ERROR if failed else OK)


async def _plan(manifest: Manifest, api: SegmentsApi, pacer: Pacer, prune: bool) -> list[Step]:
    await pacer.wait("list", limits.V3_LIST)
    listing = (await api.call("GET", BASE)).get("data", [])
    definitions: dict[str, dict[str, Any] | None] = {}
    for segment_id in needs_definition(manifest, listing):
        await pacer.wait("get", limits.V3_GET)
        items = (await api.call("GET", f"{BASE}/{_quoted(segment_id)}")).get("data") or [{}]
        definitions[segment_id] = items[0].get("included_filters")
    return plan(manifest, listing, definitions, prune)


async def _carry_out(step: Step, manifest: Manifest, api: SegmentsApi, pacer: Pacer) -> str:
    if step.action == "leave":
        return "unchanged"
    if step.action == "conflict":
        return f"failed: {step.reason}"
    try:
        await _call_for(step, manifest, api, pacer)
    except SegmentsApiError as exc:
        return f"failed: {_explained(exc)}"
    return "done"


async def _call_for(step: Step, manifest: Manifest, api: SegmentsApi, pacer: Pacer) -> None:
    declared = {d.name: d for d in manifest.segments}
    if step.action in ("archive", "unarchive", "unarchive+update"):
        verb = step.action.split("+")[0]
        target = {"name": step.name, "cs_id": step.id}
        await api.call("PATCH", f"/v2/custom-segments/{verb}", target)
    if step.action == "create":
        await pacer.wait("create", limits.V3_CREATE)
        body = {"name": step.name, "included_filters": declared[step.name].included_filters}
        await api.call("POST", BASE, body)
    if step.action in ("update", "unarchive+update"):
        await pacer.wait("update", limits.V3_UPDATE)
        update: dict[str, Any] = {"included_filters": declared[step.name].included_filters}
        if manifest.updated_by:
            update["updated_by"] = manifest.updated_by
        await api.call("PATCH", f"{BASE}/{_quoted(step.id or '')}", update)


def _explained(exc: SegmentsApiError) -> str:
    """A 409 for a definition another segment holds says which one, and what to do."""
    error = exc.doc.get("error") if isinstance(exc.doc, dict) else None
    if exc.status == 409 and isinstance(error, dict) and error.get("existing_cs_name"):
        return (
            f"segment {error['existing_cs_name']!r} (id {error.get('existing_cs_id')}) already "
            "has this exact definition, and two segments cannot share one: change the "
            "definition, or declare that segment's name instead"
        )
    return str(exc)


def _quoted(segment_id: str) -> str:
    return urllib.parse.quote(segment_id, safe="")
