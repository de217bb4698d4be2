"""`cohort-streamer emulator`: serve the MoEngage emulator until SIGTERM/SIGINT.

Prints one line `emulator listening on http://HOST:PORT` to stdout once it accepts
connections, so a parent process started with `--port 0` can read the chosen port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from . import config as defaults
from .config import EmulatorConfig, Knobs
from .server import start_emulator

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks one")
    parser.add_argument("--workspace-id", required=True, help="expected Basic-auth username")
    parser.add_argument("--api-key", required=True, help="expected Basic-auth password")
    parser.add_argument("--max-payload-bytes", type=int, default=defaults.DEFAULT_MAX_PAYLOAD_BYTES)
    parser.add_argument(
        "--rate-limit-per-minute",
        type=int,
        default=defaults.DEFAULT_RATE_LIMIT_PER_MINUTE,
        help="accepted requests allowed in any rate window",
    )
    parser.add_argument(
        "--rate-window-seconds", type=float, default=defaults.DEFAULT_RATE_WINDOW_SECONDS
    )
    parser.add_argument("--fail-5xx-ratio", type=float, default=0.0)
    parser.add_argument("--fail-429-ratio", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument(
        "--refuse-uid",
        action="append",
        default=[],
        metavar="UID",
        help="answer 400 to any request holding this uid (repeatable)",
    )
    parser.add_argument("--fail-auth", type=int, choices=defaults.FORCED_AUTH_STATUSES)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    knobs = Knobs(
        api_key=args.api_key,
        max_payload_bytes=args.max_payload_bytes,
        rate_limit_per_minute=args.rate_limit_per_minute,
        rate_window_seconds=args.rate_window_seconds,
        fail_5xx_ratio=args.fail_5xx_ratio,
        fail_429_ratio=args.fail_429_ratio,
        latency_ms=args.latency_ms,
        seed=args.seed,
        refuse_uids=frozenset(args.refuse_uid),
        fail_auth=args.fail_auth,
    )
    return EmulatorConfig(
        workspace_id=args.workspace_id, host=args.host, port=args.port, knobs=knobs
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        logger.error("invalid emulator option: %s", exc)
        return 2
    try:
        asyncio.run(_serve(config))
    except OSError as exc:  # typically the port is taken
        logger.error("emulator cannot listen on %s:%s: %s", config.host, config.port, exc)
        return 1
    return 0


async def _serve(config: EmulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    handle = await start_emulator(config)
    print(f"emulator listening on {handle.url}", flush=True)
    logger.info("emulator serving workspace %s on %s", config.workspace_id, handle.url)
    try:
        await stop.wait()
    finally:
        await handle.stop()
