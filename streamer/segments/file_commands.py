"""v2 file segments (§3): `segments file create|add|remove|replace`.

MoEngage downloads the CSV at `--file-url` itself and reports the result later, to
`--callback-url`. With `--wait` the command runs the callback receiver (callbacks.py) on
`--listen` and returns when the result for its segment arrives: exit 0 for status 201, 1 for
any other status or no result within `--wait-timeout`. Without `--callback-url`, `--wait` tells
MoEngage to call the receiver at `http://<listen>/`; set `--callback-url` to the address at
which MoEngage reaches `--listen` when that differs (a tunnel, a load balancer).

The file APIs document a CSV `Content-Type` for a JSON body (§8.4): the tool sends the
documented default, `text/csv`.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from .api import SegmentsApi, SegmentsApiError
from .callbacks import CallbackReceiver
from .command import API_ERROR, OK, Outcome, UsageError, add_json_flag

PATHS = {
    "create": "/v2/custom-segments/file-segment",
    "add": "/v2/custom-segments/file-segment/add-users",
    "remove": "/v2/custom-segments/file-segment/remove-users",
    "replace": "/v2/custom-segments/file-segment/replace",
}
CONTENT_TYPE = "text/csv"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = "v2 file segments: load members from a CSV that MoEngage downloads"
    parser = sub.add_parser("file", help=help_text, description=help_text)
    operations = parser.add_subparsers(dest="file_operation", required=True, metavar="OPERATION")
    for operation, what in (
        ("create", "create a file segment from a CSV"),
        ("add", "add the CSV's users to a file segment"),
        ("remove", "remove the CSV's users from a file segment"),
        ("replace", "replace a file segment's users by the CSV's"),
    ):
        command = operations.add_parser(operation, help=what, description=what)
        _add_options(command, operation)
        add_json_flag(command)
        command.set_defaults(segments_handler=run_operation)


def _add_options(command: argparse.ArgumentParser, operation: str) -> None:
    creating = operation == "create"
    command.add_argument("--name", required=creating, help="the segment's name")
    if not creating:
        command.add_argument("--id", help="the segment's id (cs_id); wins over --name")
    command.add_argument("--file-url", required=True, help="where MoEngage downloads the CSV")
    command.add_argument("--attribute-name", required=True, help="user attribute, e.g. ID")
    command.add_argument("--attribute-type", required=True, choices=("string", "double"))
    command.add_argument("--callback-url", help="where MoEngage posts the result")
    command.add_argument("--email", action="append", default=[], help="also mail the result")
    if creating:
        command.add_argument("--expiry-days", type=int, required=True,
                             help="days until MoEngage archives the segment")  # fmt: skip
    command.add_argument("--wait", action="store_true", help="block until the result arrives")
    command.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT of the --wait receiver")
    command.add_argument("--wait-timeout", type=float, default=600.0, help="seconds (--wait)")


async def run_operation(args: argparse.Namespace, api: SegmentsApi) -> Outcome:
    if args.file_operation != "create" and not (args.name or args.id):
        raise UsageError(f"file {args.file_operation}: give --name or --id")
    name = args.name or await _name_of(api, args.id)
    if not args.wait:
        doc = await _request(args, api, name, args.callback_url)
        return Outcome(doc, _accepted(doc))
    receiver = CallbackReceiver(echo=False)
    host, _, port = args.listen.rpartition(":")
    bound = await receiver.start(host or "127.0.0.1", int(port or 0))
    try:
        callback_url = args.callback_url or f"http://{host or '127.0.0.1'}:{bound}/"
        doc = await _request(args, api, name, callback_url)
        result = await receiver.wait_for(name, 0, args.wait_timeout)
    except TimeoutError:
        raise SegmentsApiError(f"no result for {name} within {args.wait_timeout:g} s") from None
    finally:
        await receiver.stop()
    code = OK if result.get("status") == 201 else API_ERROR
    return Outcome({"accepted": doc, "result": result}, _result(doc, result), code)


async def _request(
    args: argparse.Namespace, api: SegmentsApi, name: str, callback_url: str | None
) -> Any:
    body: dict[str, Any] = {
        "name": name,
        "file_url": args.file_url,
        "attribute_name": args.attribute_name,
        "attribute_type": args.attribute_type,
    }
    if getattr(args, "id", None):
        body["cs_id"] = args.id
    if callback_url:
        body["callback_url"] = callback_url
    if args.email:
        body["emails"] = args.email
    if args.file_operation == "create":
        body["expiry_time"] = args.expiry_days
    method = "POST" if args.file_operation == "create" else "PUT"
    return await api.call(method, PATHS[args.file_operation], body, content_type=CONTENT_TYPE)


async def _name_of(api: SegmentsApi, segment_id: str) -> str:
    """The API wants a name even when `cs_id` picks the segment (§3.1): read it back (§5.6)."""
    doc = await api.call("GET", f"/v3/custom-segments/{urllib.parse.quote(segment_id, safe='')}")
    items = doc.get("data") or [{}]
    name = items[0].get("name")
    if not isinstance(name, str):
        raise SegmentsApiError(f"segment {segment_id} has no name in the API's answer")
    return name


def _accepted(doc: Any) -> str:
    return f"{doc.get('message', 'accepted')}: {doc.get('cs_name')} ({doc.get('cs_id')})"


def _result(doc: Any, result: dict[str, Any]) -> str:
    if result.get("status") == 201:
        counts = ", ".join(f"{k} {result.get(k)}" for k in
                           ("values_found", "values_processed", "user_count"))  # fmt: skip
        return f"{_accepted(doc)}\ndone: {counts}"
    return f"{_accepted(doc)}\nfailed ({result.get('status')}): {result.get('error_message')}"
