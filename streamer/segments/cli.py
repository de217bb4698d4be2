"""`cohort-streamer segments`: the wiring of every command, one output and exit-code rule.

Exit codes: 0 done; 1 the API refused or could not be reached (its own message is printed);
2 usage: a bad option, config or input file (argparse exits 2 by itself for bad options).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from streamer.config import ConfigError, Credentials, load_credentials, load_settings

from . import callbacks, file_commands, filter_commands, plan_commands
from .api import SegmentsApi, SegmentsApiError
from .command import API_ERROR, USAGE, Handler, Outcome, UsageError

PROG = "cohort-streamer segments"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the streamer's YAML config (API host)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = parser.add_subparsers(dest="segments_command", required=True, metavar="ACTION")
    filter_commands.add_commands(sub)
    file_commands.add_commands(sub)
    plan_commands.add_commands(sub)
    callbacks.add_commands(sub)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "segments_server", None) is not None:  # a server, not an API call
        code: int = args.segments_server(args)
        return code
    if args.config is None:
        return _fail(f"{args.segments_command}: --config is required (the streamer's config)")
    try:
        host = load_settings(args.config).moengage.host
        credentials = load_credentials()
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        outcome = asyncio.run(_call(args.segments_handler, args, host, credentials))
    except UsageError as exc:
        return _fail(str(exc))
    except SegmentsApiError as exc:
        return _fail(str(exc), API_ERROR)
    json_text = orjson.dumps(outcome.doc, option=orjson.OPT_INDENT_2).decode()
    print(json_text if args.json else outcome.text)
    return outcome.code


async def _call(
    handler: Handler, args: argparse.Namespace, host: str, credentials: Credentials
) -> Outcome:
    async with SegmentsApi(host, credentials) as api:
        return await handler(args, api)


def _fail(message: str, code: int = USAGE) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code
